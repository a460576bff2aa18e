package dev.tidemark.qmp;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;

import org.junit.jupiter.api.Test;

class QmpSchemaTest
{
    private static ObjectNode json(final String text) throws Exception
    {
        return (ObjectNode) QmpJson.MAPPER.readTree(text);
    }

    @Test
    void validationHasNoSideEffectsOnTheInputAndOrdersMembers() throws Exception
    {
        final QmpStruct schema = QmpType.struct(
            QmpField.required("a", QmpType.str()),
            QmpField.optional("b", QmpType.int64(), QmpJson.MAPPER.getNodeFactory().numberNode(5)));
        final ObjectNode input = json("{\"a\":\"x\"}");
        final ObjectNode out = schema.validate(input);
        assertThat(QmpJson.compact(out)).isEqualTo("{\"a\":\"x\",\"b\":5}");
        assertThat(QmpJson.compact(input)).isEqualTo("{\"a\":\"x\"}");
    }

    @Test
    void missingIsReportedBeforeUnexpectedAndUnionVariantsAreChecked() throws Exception
    {
        final QmpStruct schema = QmpType.union(
            List.of(QmpField.required("type", QmpType.enumOf("inet", "unix")), QmpField.required("z", QmpType.bool())),
            "type", Map.of("unix", List.of(QmpField.required("path", QmpType.str()))));
        assertThatThrownBy(() -> schema.validate(json("{\"type\":\"unix\",\"q\":1}")))
            .isInstanceOfSatisfying(QmpError.class, e -> assertThat(e.desc()).isEqualTo("Parameter 'z' is missing"));
        assertThatThrownBy(() -> schema.validate(json("{\"type\":\"unix\",\"z\":true}")))
            .isInstanceOfSatisfying(QmpError.class, e -> assertThat(e.desc()).isEqualTo("Parameter 'path' is missing"));
        assertThatThrownBy(() -> schema.validate(json("{\"type\":\"inet\",\"z\":true,\"path\":\"/p\"}")))
            .isInstanceOfSatisfying(QmpError.class, e -> assertThat(e.desc()).isEqualTo("Parameter 'path' is unexpected"));
        assertThat(schema.validate(json("{\"path\":\"/p\",\"z\":false,\"type\":\"unix\"}")).get("path").asText()).isEqualTo("/p");
    }

    @Test
    void integerKindsFollowQemu() throws Exception
    {
        final QmpStruct schema = QmpType.struct(
            QmpField.optional("i", QmpType.int64()), QmpField.optional("u", QmpType.uint64()),
            QmpField.optional("w", QmpType.uint32()));
        assertThat(schema.validate(json("{\"i\":-9223372036854775808,\"u\":18446744073709551615,\"w\":4294967295}"))
            .get("u").bigIntegerValue().toString()).isEqualTo("18446744073709551615");
        for (final String[] c : new String[][] {
            {"{\"i\":9223372036854775808}", "Invalid parameter type for 'i', expected: integer"},
            {"{\"u\":-1}", "Parameter 'u' expects uint64"},
            {"{\"u\":18446744073709551616}", "Parameter 'u' expects uint64"},
            {"{\"u\":1.0}", "Parameter 'u' expects uint64"},
            {"{\"w\":4294967296}", "Parameter 'w' expects uint32_t"},
            {"{\"w\":true}", "Parameter 'w' expects uint64"},
        })
        {
            assertThatThrownBy(() -> schema.validate(json(c[0]))).as(c[0])
                .isInstanceOfSatisfying(QmpError.class, e -> assertThat(e.desc()).isEqualTo(c[1]));
        }
    }

    @Test
    void badSchemasAreRejectedWhenBuilt()
    {
        assertThatThrownBy(() -> QmpType.struct(QmpField.required("a", QmpType.str()), QmpField.optional("a", QmpType.str())))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("duplicate member 'a'");
        assertThatThrownBy(() -> QmpField.optional("n", QmpType.uint32(), TextNode.valueOf("x")))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("default of 'n'");
        assertThatThrownBy(() -> QmpType.alternate("A", QmpType.str(), QmpType.enumOf("x")))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("ambiguous");
        assertThatThrownBy(() -> QmpType.union(List.of(QmpField.required("t", QmpType.int64())), "t", Map.of()))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("required enum");
        assertThatThrownBy(() -> QmpType.union(List.of(QmpField.required("t", QmpType.enumOf("a"))), "u", Map.of()))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("not a member");
        assertThatThrownBy(() -> QmpType.enumOf()).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void commandNamesFollowQapiAndTheDownstreamRule()
    {
        final QmpCommandRegistry registry = new QmpCommandRegistry();
        registry.register("__dev.tidemark_bitmap-verify", QmpType.struct(), "ok", args -> args);
        registry.register("x-debug-block-dirty-bitmap-sha256", QmpType.struct(), "ok", args -> args);
        for (final String bad : List.of("Query", "", "-x", "__dev.tidemark", "a b", "__Dev_x"))
        {
            assertThatThrownBy(() -> registry.register(bad, QmpType.struct(), "bad", args -> args)).as(bad)
                .isInstanceOf(IllegalArgumentException.class);
        }
        assertThatThrownBy(() -> registry.register("x-debug-block-dirty-bitmap-sha256", QmpType.struct(), "dup", args -> args))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("already registered");
        assertThat(registry.commands()).extracting(QmpCommand::name)
            .containsExactly("__dev.tidemark_bitmap-verify", "x-debug-block-dirty-bitmap-sha256");
    }
}
