// The Bio-Formats oracle's long-lived JVM (tests/readers.py compiles and starts it once per test
// session; needs a JDK, Debian default-jdk-headless):
//   javac -cp bioformats_package.jar -d CLASSES tests/data/BioFormatsServer.java
//   java -cp bioformats_package.jar:CLASSES BioFormatsServer
//
// It runs the same command-line tools as `showinf` / `bfconvert`, one request at a time:
// loci.formats.tools.ImageInfo.testRead(args) and ImageConverter.testConvert(new ImageWriter(),
// args), which is exactly what their main() does minus System.exit. Each request's System.out
// and System.err are captured and sent back with the exit code main() would have given.
//
// Protocol (UTF-8, one request at a time):
//   start:    server -> "MMTS-BF READY <version>\n"
//   request:  client -> "<tool> <arg> <arg> ...\n", tool = info | convert, every field
//             percent-encoded (URLDecoder), so paths may hold spaces and any character;
//             tool selftest-halt CODE ends the JVM at once (the self-checks' crash)
//   response: server -> "MMTS-BF DONE <exit> <fatal> <nout> <nerr>\n" then nout bytes of
//             stdout and nerr bytes of stderr. fatal = 1 after a java.lang.Error (e.g.
//             OutOfMemoryError): the server exits after answering, the client starts a new one.
// End of input ends the server, so it never outlives the test process.

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;

public class BioFormatsServer {
    public static void main(String[] argv) throws Exception {
        OutputStream protocol = new FileOutputStream(FileDescriptor.out);
        PrintStream realErr = System.err;
        // Between requests anything printed goes to the server's stderr, never into the protocol.
        System.setOut(new PrintStream(new FileOutputStream(FileDescriptor.err), true, "UTF-8"));
        loci.common.DebugTools.enableLogging("INFO"); // what ImageInfo/ImageConverter main() do
        String ready = "MMTS-BF READY " + loci.formats.FormatTools.VERSION + "\n";
        protocol.write(ready.getBytes(StandardCharsets.UTF_8));
        protocol.flush();

        BufferedReader in =
            new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isEmpty()) {
                continue;
            }
            String[] fields = line.split(" ", -1);
            String tool = URLDecoder.decode(fields[0], StandardCharsets.UTF_8);
            String[] args = new String[fields.length - 1];
            for (int i = 1; i < fields.length; i++) {
                args[i - 1] = URLDecoder.decode(fields[i], StandardCharsets.UTF_8);
            }
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            PrintStream outStream = new PrintStream(out, true, "UTF-8");
            PrintStream errStream = new PrintStream(err, true, "UTF-8");
            int exit;
            boolean fatal = false;
            System.setOut(outStream);
            System.setErr(errStream);
            try {
                boolean ok;
                if (tool.equals("info")) {
                    ok = new loci.formats.tools.ImageInfo().testRead(args);
                } else if (tool.equals("convert")) {
                    ok = new loci.formats.tools.ImageConverter()
                        .testConvert(new loci.formats.ImageWriter(), args);
                } else if (tool.equals("selftest-halt")) {
                    // tests/test_readers_selfcheck.py: a JVM that dies in the middle of a request
                    Runtime.getRuntime().halt(Integer.parseInt(args[0]));
                    ok = false;
                } else {
                    errStream.println("BioFormatsServer: unknown tool " + tool);
                    ok = false;
                }
                exit = ok ? 0 : 1;
            } catch (Throwable exc) {
                // main() would let it escape: the JVM prints the trace and exits with 1.
                StringWriter trace = new StringWriter();
                exc.printStackTrace(new PrintWriter(trace));
                errStream.print("Exception in thread \"main\" " + trace);
                exit = 1;
                fatal = exc instanceof Error;
            } finally {
                outStream.flush();
                errStream.flush();
                System.setOut(new PrintStream(new FileOutputStream(FileDescriptor.err), true, "UTF-8"));
                System.setErr(realErr);
            }
            byte[] o = out.toByteArray();
            byte[] e = err.toByteArray();
            String head = "MMTS-BF DONE " + exit + " " + (fatal ? 1 : 0) + " " + o.length + " "
                + e.length + "\n";
            protocol.write(head.getBytes(StandardCharsets.UTF_8));
            protocol.write(o);
            protocol.write(e);
            protocol.flush();
            if (fatal) {
                System.exit(3);
            }
        }
    }
}
