package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;

import org.junit.jupiter.api.Test;

/** The daemon's collector flag and when an explicit choice replaces it; one test thread. */
class JvmFlagsTest
{
    @Test
    void theDaemonRunsZgcUnlessItsOptionsChooseACollector()
    {
        assertThat(JvmFlags.collector(List.of())).as("the test JVM chooses none itself").containsExactly("-XX:+UseZGC");
        assertThat(JvmFlags.forDaemon(List.of())).containsAll(JvmFlags.forThisJava()).endsWith("-XX:+UseZGC");
        assertThat(JvmFlags.collector(List.of("-Xmx256m", "-XX:+UseG1GC"))).isEmpty();
        assertThat(JvmFlags.forDaemon(List.of("-XX:+UseSerialGC"))).isEqualTo(JvmFlags.forThisJava());
    }

    @Test
    void onlyCollectorOptionsCountAsAChoice()
    {
        assertThat(List.of("-XX:+UseZGC", "-XX:+UseG1GC", "-XX:+UseParallelGC", "-XX:+UseShenandoahGC"))
            .allMatch(JvmFlags::choosesCollector);
        assertThat(List.of("-XX:+UseCompressedOops", "-XX:+UseLargePages", "-XX:-UseZGC", "-Xlog:gc", "-XX:+UseNUMA"))
            .noneMatch(JvmFlags::choosesCollector);
    }
}
