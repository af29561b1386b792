package standin;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;

/**
 * Redis's health as Spring's RedisHealthIndicator sees it: a connection that authenticates with
 * spring.data.redis.username and spring.data.redis.password (AUTH username password, as Lettuce sends it with
 * both set; AUTH password with only a password) and answers PING.
 * RESP2 over a plain socket (https://redis.io/docs/latest/develop/reference/protocol-spec/).
 */
final class Redis {
    private Redis() {
    }

    static void ping(String host, int port, String username, String password, int timeoutMillis) throws IOException {
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(host, port), timeoutMillis);
            socket.setSoTimeout(timeoutMillis);
            OutputStream out = socket.getOutputStream();
            BufferedReader in = new BufferedReader(new InputStreamReader(socket.getInputStream(),
                StandardCharsets.UTF_8));
            if (password != null && !password.isEmpty()) {
                if (username != null && !username.isEmpty()) {
                    expect(command(out, in, "AUTH", username, password), "+OK", "AUTH");
                } else {
                    expect(command(out, in, "AUTH", password), "+OK", "AUTH");
                }
            }
            expect(command(out, in, "PING"), "+PONG", "PING");
        }
    }

    private static String command(OutputStream out, BufferedReader in, String... words) throws IOException {
        StringBuilder request = new StringBuilder("*").append(words.length).append("\r\n");
        for (String word : words) {
            request.append('$').append(word.getBytes(StandardCharsets.UTF_8).length).append("\r\n")
                .append(word).append("\r\n");
        }
        out.write(request.toString().getBytes(StandardCharsets.UTF_8));
        out.flush();
        String reply = in.readLine();
        if (reply == null) {
            throw new IOException("Redis closed the connection");
        }
        return reply;
    }

    private static void expect(String reply, String wanted, String what) throws IOException {
        if (!reply.equals(wanted)) {
            // An error reply (-NOAUTH, -WRONGPASS) names the problem; never echo what was sent.
            throw new IOException(what + ": " + reply);
        }
    }
}
