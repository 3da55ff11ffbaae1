/* SPDX-License-Identifier: MIT */
#pragma once

/* Playing both encryptors (SAEs) of ETSI GS QKD 014 against a topology's clients (KMEs). */

#include <stdbool.h>

#include "ctl-http.h"
#include "topology.h"

/* The URL prefix of an SAE's key routes: "http://ADDR:PORT/client/KME/etsi/api/v1/keys". */
int etsi_keys_url(const Topology *t, const TopologyNode *kme, char **ret);

/* Gets a key for master (enc_keys on the master's KME, "Authorization: MASTER") and the same key
 * for slave (dec_keys on the slave's KME, "Authorization: SLAVE"), prints both and whether they
 * match. Returns 0 when they match, 1 when they do not, a negative errno when a call failed. */
int get_key_pair(Ctl *ctl, const Topology *t, const char *master, const char *slave, unsigned size_bits,
                 bool json);
