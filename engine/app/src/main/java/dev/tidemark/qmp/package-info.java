/**
 * The QMP control protocol: server, connection state machine, command registry with declarative
 * argument schemas, events, and a client. See docs/qmp.md.
 */
package dev.tidemark.qmp;
