// The digest service of handoff_peer.py, served by the JVM: a ServerSocket
// bound to 127.0.0.1, which Java on a dual-stack Linux host opens as an
// AF_INET6 socket bound to ::ffff:127.0.0.1.  For each connection it reads
// to the end, appends "LENGTH SHA256" to the record file and answers the
// SHA-256 in hex and a newline.
//
//   java -cp DIR MappedServer PORT RECORD_FILE
//
// Prints "listening PORT" once it accepts connections.

import java.io.FileWriter;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

public final class MappedServer {
    private static final int CLIENT_TIMEOUT_MS = 60_000;

    public static void main(String[] args) throws IOException, NoSuchAlgorithmException {
        int port = Integer.parseInt(args[0]);
        String recordPath = args[1];
        try (ServerSocket listener = new ServerSocket(port, 16, InetAddress.getByName("127.0.0.1"))) {
            System.out.println("listening " + port);
            System.out.flush();
            while (true) {
                try (Socket conn = listener.accept()) {
                    conn.setSoTimeout(CLIENT_TIMEOUT_MS);
                    serve(conn, recordPath);
                } catch (IOException e) {
                    System.out.println("connection failed: " + e);
                    System.out.flush();
                }
            }
        }
    }

    private static void serve(Socket conn, String recordPath) throws IOException, NoSuchAlgorithmException {
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        InputStream in = conn.getInputStream();
        byte[] buf = new byte[65536];
        long length = 0;
        for (int n; (n = in.read(buf)) > 0; length += n)
            sha.update(buf, 0, n);
        StringBuilder hex = new StringBuilder();
        for (byte b : sha.digest())
            hex.append(String.format("%02x", b));
        try (FileWriter record = new FileWriter(recordPath, true)) {
            record.write(length + " " + hex + "\n");
        }
        OutputStream out = conn.getOutputStream();
        out.write((hex + "\n").getBytes(StandardCharsets.US_ASCII));
        out.flush();
    }
}
