/**
 * QMP framing: splitting a client's byte stream into top-level JSON values without parsing them, and
 * the output rule (one ASCII-only JSON object per message, CRLF-terminated). JSON parsing itself
 * belongs to the QMP server in the engine module.
 */
package dev.tidemark.io.qmp;
