package dev.tidemark.qmp;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The body of one QMP command; always called on the server's single dispatcher thread, so
 * implementations need no locking against other commands.
 */
@FunctionalInterface
public interface QmpHandler
{
    /**
     * Runs the command.
     *
     * @param args the arguments, already validated against the command's schema, with declared
     *             defaults filled in for absent optional members; never null (empty when none).
     * @return the {@code return} value; commands without data return an empty object.
     * @throws QmpError to answer with an error; nothing must have changed in that case.
     */
    JsonNode handle(ObjectNode args) throws QmpError;
}
