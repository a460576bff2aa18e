package dev.tidemark.io.nbd;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicReference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The request buffer pool: size classes, reuse and the byte budget; runs on JUnit's thread and one helper. */
@Timeout(30)
class BufferPoolTest
{
    @Test
    void handsOutPowerOfTwoBuffersWithTheAskedLimitAndReusesThem()
    {
        final BufferPool pool = new BufferPool(64 << 20);
        final ByteBuffer small = pool.acquire(5000);
        assertThat(small.isDirect()).isTrue();
        assertThat(small.capacity()).isEqualTo(8192);
        assertThat(small.limit()).isEqualTo(5000);
        pool.release(small);
        assertThat(pool.acquire(4097)).isSameAs(small);
        assertThat(pool.acquire(0).capacity()).isEqualTo(4096);
        assertThat(pool.acquire(32 << 20).capacity()).isEqualTo(32 << 20);
        assertThatThrownBy(() -> pool.acquire((32 << 20) + 1)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("32 MiB");
        assertThatThrownBy(() -> new BufferPool(1 << 20)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void acquireWaitsWhileTheBudgetIsSpent() throws Exception
    {
        final BufferPool pool = new BufferPool(32 << 20);
        final ByteBuffer first = pool.acquire(16 << 20);
        final ByteBuffer second = pool.acquire(16 << 20);
        final AtomicReference<ByteBuffer> third = new AtomicReference<>();
        final Thread waiter = new Thread(() -> third.set(pool.acquire(1)));
        waiter.start();
        waiter.join(300);
        assertThat(waiter.isAlive()).as("over budget: waits").isTrue();
        pool.release(first);
        waiter.join(5000);
        assertThat(third.get()).isNotNull();
        pool.release(second);
        pool.release(third.get());
    }
}
