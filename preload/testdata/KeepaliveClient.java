// Test client for libkadiag_keepalive on the JVM, which opens AF_INET6
// sockets and whose HTTP libraries often call setKeepAlive(false).
//
//   java KeepaliveClient http URL            HttpClient GET, blocks until the reply
//   java KeepaliveClient socket HOST PORT    Socket with setKeepAlive(false): prints
//                                            its own view, waits for stdin to close
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import jdk.net.ExtendedSocketOptions;

public class KeepaliveClient {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("http")) {
            HttpClient c = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
            HttpResponse<String> r = c.send(HttpRequest.newBuilder(URI.create(args[1])).timeout(Duration.ofSeconds(60)).build(),
                    HttpResponse.BodyHandlers.ofString());
            System.out.println("status " + r.statusCode());
            return;
        }
        Socket s = new Socket();
        s.setKeepAlive(false); // what Apache HttpClient and AWS SDK v1 do
        s.connect(new InetSocketAddress(args[1], Integer.parseInt(args[2])), 10000);
        System.out.printf("connected keepalive=%d idle=%d intvl=%d cnt=%d user_timeout=0%n",
                s.getKeepAlive() ? 1 : 0,
                s.getOption(ExtendedSocketOptions.TCP_KEEPIDLE),
                s.getOption(ExtendedSocketOptions.TCP_KEEPINTERVAL),
                s.getOption(ExtendedSocketOptions.TCP_KEEPCOUNT));
        System.out.flush();
        while (System.in.read() >= 0) {
        }
    }
}
