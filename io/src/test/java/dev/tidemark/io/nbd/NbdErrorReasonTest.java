package dev.tidemark.io.nbd;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.io.BlockStoreException;
import dev.tidemark.io.IoReason;
import java.io.IOException;
import org.junit.jupiter.api.Test;

/**
 * The NBD error value follows from the failure's {@link IoReason}, and a server's value gives the reason back;
 * stateless, on the test thread.
 */
class NbdErrorReasonTest
{
    @Test
    void everyReasonHasItsValueAndComesBackFromIt()
    {
        for (final IoReason reason : IoReason.values())
        {
            assertThat(NbdProtocol.reasonOf(NbdProtocol.errorOf(reason))).as(reason.name()).isEqualTo(reason);
        }
        assertThat(NbdProtocol.errorOf(IoReason.READ_ONLY)).isEqualTo(NbdProtocol.EPERM);
        assertThat(NbdProtocol.reasonOf(NbdProtocol.ESHUTDOWN)).isEqualTo(IoReason.IO_ERROR);
    }

    @Test
    void failuresAreClassifiedByType()
    {
        assertThat(IoReason.of(new IllegalArgumentException("No space left"))).isEqualTo(IoReason.INVALID_ARGUMENT);
        assertThat(IoReason.of(new IllegalStateException("read-only"))).isEqualTo(IoReason.IO_ERROR);
        assertThat(IoReason.of(new BlockStoreException(IoReason.NOT_SUPPORTED, "x"))).isEqualTo(IoReason.NOT_SUPPORTED);
        assertThat(IoReason.of(new IOException("No space left on device"))).isEqualTo(IoReason.NO_SPACE);
        assertThat(IoReason.of(new IOException("Input/output error"))).isEqualTo(IoReason.IO_ERROR);
        assertThat(new NbdException("refused", NbdProtocol.EPERM).ioReason()).isEqualTo(IoReason.READ_ONLY);
        assertThat(new NbdDisconnectedException("gone", null).ioReason()).isEqualTo(IoReason.IO_ERROR);
    }
}
