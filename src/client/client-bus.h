/* SPDX-License-Identifier: MIT */
#pragma once

/* The client on D-Bus (dbus/org.dske.Node1.xml, org.dske.Client1.xml, org.dske.Peer1.xml): the
 * node object and one object per configured hub. */

#include "client-manager.h"
#include "client-peer.h"

/* Opens the bus, exports the objects, requests org.dske.Client.<name>. A failure is logged and
 * recorded in m->bus; the client runs on without D-Bus. */
int client_bus_connect(Manager *m);

/* Change notifications; they do nothing without a bus. */
void client_bus_state_changed(Manager *m);
/* SharesRequired= changed on reload. */
void client_bus_shares_required_changed(Manager *m);
/* Signals the hubs whose registration state changed since the last call. */
void client_bus_peers_changed(Manager *m);
void client_bus_ready_changed(Manager *m);
/* PoolLow: a pool of p fell under the low-water mark. */
void client_bus_pool_low(PeerHub *p, PoolOwner owner, uint64_t available, uint64_t threshold);
