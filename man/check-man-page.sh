# SPDX-License-Identifier: MIT
# Renders a manual page as man(1) shows it and fails on any warning from man or groff, and when
# lexgrog(1) cannot read the page's NAME section (which apropos and whatis need).
#
#   sh man/check-man-page.sh PAGE

set -eu

page=$1

# A fixed locale and width make the result the same everywhere; the pager is not involved
# because the output goes to /dev/null. man-db's seccomp sandbox is left out: some containers
# refuse the system calls it needs, which would fail the check for reasons unrelated to the page.
export LC_ALL=C.UTF-8 MANWIDTH=80 MANROFFSEQ='' MAN_DISABLE_SECCOMP=1

if ! warnings=$(man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null); then
        printf '%s\n' "$warnings" >&2
        echo "man failed to render $page" >&2
        exit 1
fi
if [ -n "$warnings" ]; then
        printf '%s\n' "$warnings" >&2
        echo "man printed warnings for $page" >&2
        exit 1
fi

if ! lexgrog "$page" >/dev/null; then
        echo "lexgrog cannot read the NAME section of $page" >&2
        exit 1
fi
