package dev.tidemark;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static org.assertj.core.api.Assertions.assertThat;

import com.tngtech.archunit.core.domain.Dependency;
import com.tngtech.archunit.core.domain.JavaClass;
import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import com.tngtech.archunit.library.GeneralCodingRules;
import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.CutContext;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.registry.BitmapRegistry;
import dev.tidemark.engine.registry.MarkSide;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The module graph and the package table of docs/architecture.md, checked against the compiled main classes of
 * every module on this classpath (mmap-bitmap, io, the engine library, the application); confined to the test
 * thread.
 */
class ArchitectureTest
{
    private static final String APP = "dev.tidemark.cli..";
    private static final Pattern PACKAGE_ROW = Pattern.compile("^\\| `(dev\\.tidemark[\\w.]*)` \\|[^|]*\\| (.*) \\|$");
    private static final Pattern NAME = Pattern.compile("`(dev\\.tidemark[\\w.]*)`");

    private static JavaClasses classes;

    @BeforeAll
    static void importClasses()
    {
        // Main classes only: the shared test-jar (dev.tidemark.io.testing) and tests may use anything.
        classes = new ClassFileImporter().withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
            .withImportOption(location -> !location.contains("/dev/tidemark/io/testing/"))
            .importPackages("dev.tidemark");
    }

    @Test
    void theLibraryNeverDependsOnTheApplication()
    {
        noClasses().that().resideInAPackage("dev.tidemark.engine..")
            .should().dependOnClassesThat().resideInAnyPackage(APP, "dev.tidemark.daemon..", "dev.tidemark.qmp..")
            .check(classes);
    }

    @Test
    void ioNeverDependsOnTheEngineOrTheBitmaps()
    {
        noClasses().that().resideInAPackage("dev.tidemark.io..")
            .should().dependOnClassesThat().resideInAnyPackage("dev.tidemark.engine..", "dev.tidemark.bitmap..", APP,
                "dev.tidemark.daemon..", "dev.tidemark.qmp..")
            .check(classes);
    }

    @Test
    void mmapBitmapDependsOnNothingOfOurs()
    {
        noClasses().that().resideInAPackage("dev.tidemark.bitmap..")
            .should().dependOnClassesThat().resideInAnyPackage("dev.tidemark.io..", "dev.tidemark.engine..", APP,
                "dev.tidemark.daemon..", "dev.tidemark.qmp..")
            .check(classes);
    }

    @Test
    void theRingKnowsEventsAndHandlersNotDisks()
    {
        // The package table allows engine.ring -> engine (seams such as WriteInterceptor); this is the class-level cut.
        noClasses().that().resideInAPackage("dev.tidemark.engine.ring")
            .should().dependOnClassesThat().belongToAnyOf(TrackedDisk.class, CutContext.class, ControlAction.class)
            .because("the disk builds its ring and runs its transactions as cut handlers (docs/architecture.md)")
            .check(classes);
    }

    @Test
    void onlyTheRingUsesTheRegistrysMarkThreadHooks()
    {
        noClasses().that().resideOutsideOfPackages("dev.tidemark.engine.ring", "dev.tidemark.engine.registry")
            .should().callMethod(BitmapRegistry.class, "claimMarkSide")
            .orShould().dependOnClassesThat().belongToAnyOf(MarkSide.class)
            .because("BitmapRegistry's public methods are what an embedder may call; its mark side is the ring's")
            .check(classes);
    }

    @Test
    void theLibraryLogsNothingAndLeavesTheStandardStreamsAlone()
    {
        final JavaClasses library = classes.that(com.tngtech.archunit.base.DescribedPredicate.describe("library",
            c -> c.getPackageName().startsWith("dev.tidemark.engine") || c.getPackageName().startsWith("dev.tidemark.io")
                || c.getPackageName().startsWith("dev.tidemark.bitmap")));
        assertThat(library).isNotEmpty();
        GeneralCodingRules.NO_CLASSES_SHOULD_USE_JAVA_UTIL_LOGGING.check(library);
        GeneralCodingRules.NO_CLASSES_SHOULD_ACCESS_STANDARD_STREAMS.check(library);
    }

    @Test
    void everyPackageDependsOnlyOnWhatItsRowInDocsArchitectureAllows() throws IOException
    {
        final Map<String, Set<String>> allowed = documentedTable();
        final Map<String, Set<String>> violations = new TreeMap<>();
        final Set<String> undocumented = new TreeSet<>();
        for (final JavaClass javaClass : classes)
        {
            final String from = javaClass.getPackageName();
            if (!allowed.containsKey(from))
            {
                undocumented.add(from);
                continue;
            }
            for (final Dependency dependency : javaClass.getDirectDependenciesFromSelf())
            {
                final String to = dependency.getTargetClass().getPackageName();
                if (to.startsWith("dev.tidemark") && !to.equals(from) && !allowed.get(from).contains(to))
                {
                    violations.computeIfAbsent(from + " -> " + to, k -> new TreeSet<>())
                        .add(javaClass.getSimpleName() + " uses " + dependency.getTargetClass().getSimpleName());
                }
            }
        }
        assertThat(undocumented).as("packages without a row in docs/architecture.md (Packages)").isEmpty();
        assertThat(violations).as("dependencies docs/architecture.md (Packages) does not allow").isEmpty();
    }

    @Test
    void theTableIsReadAndStrict() throws IOException
    {
        // A table that failed to parse would allow nothing and let the check above pass vacuously on no rows.
        final Map<String, Set<String>> allowed = documentedTable();
        assertThat(allowed).containsKeys("dev.tidemark.bitmap", "dev.tidemark.io", "dev.tidemark.engine",
            "dev.tidemark.engine.journal", "dev.tidemark.daemon", "dev.tidemark.cli");
        assertThat(allowed.get("dev.tidemark.bitmap")).isEmpty();
        assertThat(allowed.get("dev.tidemark.io.nbd")).containsExactly("dev.tidemark.io", "dev.tidemark.io.tls");
        assertThat(allowed.get("dev.tidemark.engine")).doesNotContain("dev.tidemark.daemon", "dev.tidemark.qmp");
    }

    /** @return package to the packages its row allows, from the Packages table of docs/architecture.md. */
    private static Map<String, Set<String>> documentedTable() throws IOException
    {
        final Path root = Path.of(System.getProperty("user.dir")).getParent().getParent();
        final String doc = Files.readString(root.resolve("docs/architecture.md"));
        final String section = doc.substring(doc.indexOf("### Packages"), doc.indexOf("### Errors and logging"));
        final Map<String, Set<String>> table = new LinkedHashMap<>();
        for (final String line : section.split("\n"))
        {
            final Matcher row = PACKAGE_ROW.matcher(line.strip());
            if (row.matches())
            {
                final Set<String> targets = new TreeSet<>();
                final Matcher name = NAME.matcher(row.group(2));
                while (name.find())
                {
                    targets.add(name.group(1));
                }
                table.put(row.group(1), targets);
            }
        }
        return table;
    }
}
