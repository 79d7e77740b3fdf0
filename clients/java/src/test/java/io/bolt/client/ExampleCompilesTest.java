package io.bolt.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The runnable example in examples/ keeps compiling against the library. */
class ExampleCompilesTest {
  @Test
  void exampleCompiles(@TempDir Path out) throws Exception {
    Path src = Paths.get("examples", "BoltExample.java");
    assertTrue(Files.exists(src));
    JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int rc = javac.run(null, null, new PrintStream(err, true, StandardCharsets.UTF_8),
        "-d", out.toString(), "-cp", System.getProperty("java.class.path"), src.toString());
    assertEquals(0, rc, err.toString(StandardCharsets.UTF_8));
  }
}
