/* SPDX-License-Identifier: MIT */
#pragma once

/* The hub on D-Bus (dbus/org.dske.Node1.xml, org.dske.Hub1.xml, org.dske.Peer1.xml): the node
 * object and one object per registered client. */

#include "hub-manager.h"

/* Opens the bus, exports the objects, requests org.dske.Hub.<name>. A failure is logged and
 * recorded in m->bus; the hub runs on without D-Bus. */
int hub_bus_connect(Manager *m);

/* Change notifications; they do nothing without a bus. */
void hub_bus_state_changed(Manager *m);
void hub_bus_client_added(Manager *m, PeerClient *c);
void hub_bus_client_removed(Manager *m, PeerClient *c);
