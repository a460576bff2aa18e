/**
 * Test support shared by the tests of io, the engine library and the application (the io module's test-jar):
 * heap and failing block stores, and the runner of external programs (qemu-img, nbdinfo, nbdkit, fio). Every class
 * says its thread contract in its first sentence.
 */
package dev.tidemark.io.testing;
