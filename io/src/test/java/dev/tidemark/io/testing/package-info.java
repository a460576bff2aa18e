/**
 * Test support shared by the tests of io, the engine library and the application (the io module's test-jar):
 * a heap block store, parallel workers, small waits, and the runner of external programs (qemu-img, nbdinfo, nbdkit,
 * fio) and of the servers among them. The failing store, which the daemon needs too, is
 * {@code dev.tidemark.io.FaultyStore}.
 * Every class says its thread contract in its first sentence.
 */
package dev.tidemark.io.testing;
