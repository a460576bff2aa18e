package dev.tidemark.qmp;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Engine events through {@link QmpServer#publishEngineEvent}: encoded off the publisher's thread; one test thread. */
@Timeout(60)
class QmpEngineEventTest
{
    private static final Duration WAIT = Duration.ofSeconds(10);

    private QmpTestServer test;

    @BeforeEach
    void start() throws Exception
    {
        test = new QmpTestServer();
    }

    @AfterEach
    void stop() throws Exception
    {
        test.close();
    }

    /** A data value whose serialization records the thread that ran it; any thread may serialize it. */
    public static final class ThreadRecorder
    {
        final AtomicReference<String> serializedOn = new AtomicReference<>();

        /** @return a fixed value; Jackson calls this while it turns the event into JSON. */
        public String getValue()
        {
            serializedOn.compareAndSet(null, Thread.currentThread().getName());
            return "recorded";
        }
    }

    @Test
    void anEngineEventIsEncodedByAConnectionWriterNotByThePublisher() throws Exception
    {
        try (QmpClient client = test.negotiated())
        {
            final ThreadRecorder recorder = new ThreadRecorder();
            final Map<String, Object> data = new LinkedHashMap<>();
            data.put("id", "job0");
            data.put("probe", recorder);
            final Thread publisher = new Thread(() -> test.server.publishEngineEvent("JOB_STATUS_CHANGE", data),
                "engine-ring");
            publisher.start();
            publisher.join();
            final JsonNode event = client.awaitEvent("JOB_STATUS_CHANGE", WAIT);
            assertThat(QmpJson.compact(event.get("data")))
                .isEqualTo("{\"id\":\"job0\",\"probe\":{\"value\":\"recorded\"}}");
            assertThat(event.path("timestamp").path("seconds").asLong()).isPositive();
            assertThat(recorder.serializedOn.get()).startsWith("qmp-write-");
        }
    }

    @Test
    void twoClientsGetTheSameEventEncodedOnce() throws Exception
    {
        try (QmpClient first = test.negotiated(); QmpClient second = test.negotiated())
        {
            final ThreadRecorder recorder = new ThreadRecorder();
            test.server.publishEngineEvent("BLOCK_JOB_READY", Map.of("probe", recorder));
            final JsonNode a = first.awaitEvent("BLOCK_JOB_READY", WAIT);
            final JsonNode b = second.awaitEvent("BLOCK_JOB_READY", WAIT);
            assertThat(a).isEqualTo(b);
            assertThat(recorder.serializedOn.get()).startsWith("qmp-write-");
        }
    }

    @Test
    void aRehearsedEventIsEncodedButReachesNoClient() throws Exception
    {
        try (QmpClient client = test.negotiated())
        {
            final byte[] bytes = test.server.rehearseEngineEvent("JOB_STATUS_CHANGE",
                Map.of("id", "scratch", "status", "created"));
            final JsonNode rehearsed = QmpJson.parse(bytes);
            assertThat(rehearsed.path("event").asText()).isEqualTo("JOB_STATUS_CHANGE");
            assertThat(rehearsed.path("data").path("id").asText()).isEqualTo("scratch");
            test.server.publishEngineEvent("RESUME", Map.of());
            client.awaitEvent("RESUME", WAIT);
            assertThat(client.drainEvents()).extracting(e -> e.path("event").asText())
                .doesNotContain("JOB_STATUS_CHANGE");
        }
    }

    @Test
    void anEventThatCannotBeEncodedIsDroppedAndLaterOnesStillArrive() throws Exception
    {
        try (QmpClient client = test.negotiated())
        {
            // No properties: Jackson refuses an empty bean.
            test.server.publishEngineEvent("BROKEN_EVENT", Map.of("value", new Object()));
            test.server.publishEngineEvent("RESUME", Map.of());
            final JsonNode next = client.awaitEvent("RESUME", WAIT);
            assertThat(next.has("data")).isFalse();
            assertThat(client.execute("query-version", null).has("qemu")).isTrue();
            assertThat(client.drainEvents()).extracting(e -> e.path("event").asText()).doesNotContain("BROKEN_EVENT");
        }
    }
}
