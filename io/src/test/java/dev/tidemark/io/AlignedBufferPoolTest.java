package dev.tidemark.io;

import dev.tidemark.io.testing.Workers;
import org.agrona.BufferUtil;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class AlignedBufferPoolTest
{
    @Test
    void handsOutAlignedBuffersOfTheRightClassAndReusesThem()
    {
        final AlignedBufferPool pool = new AlignedBufferPool(4096, 4096, 1 << 20, 2);
        final ByteBuffer small = pool.acquire(1);
        assertThat(small.isDirect()).isTrue();
        assertThat(small.capacity()).isEqualTo(4096);
        assertThat(small.limit()).isEqualTo(1);
        assertThat(BufferUtil.address(small) % 4096).isZero();
        final ByteBuffer mid = pool.acquire(4097);
        assertThat(mid.capacity()).isEqualTo(8192);
        final ByteBuffer max = pool.acquire(1 << 20);
        assertThat(max.capacity()).isEqualTo(1 << 20);
        assertThat(BufferUtil.address(max) % 4096).isZero();
        assertThat(pool.outstanding()).isEqualTo(3);
        pool.release(mid);
        final ByteBuffer again = pool.acquire(5000);
        assertThat(again).isSameAs(mid);
        assertThat(again.position()).isZero();
        assertThat(again.limit()).isEqualTo(5000);
        assertThat(pool.allocations()).isEqualTo(3);
        pool.release(again);
        pool.release(small);
        pool.release(max);
        assertThat(pool.outstanding()).isZero();
    }

    @Test
    void keepsAtMostMaxIdlePerClass()
    {
        final AlignedBufferPool pool = new AlignedBufferPool(512, 4096, 4096, 3);
        final List<ByteBuffer> buffers = new ArrayList<>();
        for (int i = 0; i < 10; i++)
        {
            buffers.add(pool.acquire(4096));
        }
        buffers.forEach(pool::release);
        assertThat(pool.maxIdlePerClass()).isEqualTo(4);
        assertThat(pool.idle()).isEqualTo(4);
        assertThat(pool.outstanding()).isZero();
    }

    @Test
    void refusesBadArgumentsAndForeignOrDoubleReleases()
    {
        assertThatThrownBy(() -> new AlignedBufferPool(3000, 4096, 8192, 1)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("alignment 3000");
        assertThatThrownBy(() -> new AlignedBufferPool(4096, 8192, 4096, 1)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new AlignedBufferPool(4096, 4096, 6000, 1)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new AlignedBufferPool(4096, 4096, 8192, 0)).isInstanceOf(IllegalArgumentException.class);
        final AlignedBufferPool pool = AlignedBufferPool.standard();
        assertThatThrownBy(() -> pool.acquire(0)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> pool.acquire((4 << 20) + 1)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("outside the pool's classes");
        final ByteBuffer buffer = pool.acquire(100);
        pool.release(buffer);
        assertThatThrownBy(() -> pool.release(buffer)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("already released");
        assertThatThrownBy(() -> pool.release(ByteBuffer.allocateDirect(4096))).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> pool.release(ByteBuffer.allocate(4096))).isInstanceOf(IllegalArgumentException.class);
        assertThat(pool.idle()).isEqualTo(1);
    }

    @Test
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void threadsNeverShareABufferAndEveryBufferComesBack() throws Exception
    {
        final long seed = System.nanoTime();
        final AlignedBufferPool pool = new AlignedBufferPool(4096, 4096, 256 * 1024, 4);
        final int threads = 8;
        Workers.run(threads, seed, (t, random) ->
        {
            final byte mark = (byte)(t + 1);
            for (int i = 0; i < 5000; i++)
            {
                final ByteBuffer buffer = pool.acquire(1 + random.nextInt(256 * 1024));
                final int limit = buffer.limit();
                for (int j = 0; j < limit; j += 512)
                {
                    buffer.put(j, mark);
                }
                Thread.onSpinWait();
                for (int j = 0; j < limit; j += 512)
                {
                    if (buffer.get(j) != mark)
                    {
                        throw new AssertionError("buffer shared between threads at byte " + j);
                    }
                }
                pool.release(buffer);
            }
        });
        assertThat(pool.outstanding()).isZero();
        assertThat(pool.idle()).isLessThanOrEqualTo(4 * 7);
    }
}
