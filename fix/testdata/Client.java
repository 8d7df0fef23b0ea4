// A JDK client for kadiag fix's tests: it connects, then calls
// setKeepAlive(false) as Apache HttpClient and the AWS SDK v1 do, and
// prints its socket's options (read through the JDK) as JSON now and on
// every stdin line ("off" calls setKeepAlive(false) again).
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.Socket;
import jdk.net.ExtendedSocketOptions;

public class Client {
    static void dump(Socket s) throws Exception {
        System.out.printf("{\"fd\":-1,\"keepalive\":%d,\"idle\":%d,\"intvl\":%d,\"cnt\":%d,\"user_timeout\":-1}%n",
                s.getKeepAlive() ? 1 : 0, s.getOption(ExtendedSocketOptions.TCP_KEEPIDLE),
                s.getOption(ExtendedSocketOptions.TCP_KEEPINTERVAL), s.getOption(ExtendedSocketOptions.TCP_KEEPCOUNT));
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        Socket s = new Socket();
        s.connect(new InetSocketAddress(args[0], Integer.parseInt(args[1])));
        s.setKeepAlive(false);
        dump(s);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        for (String line; (line = in.readLine()) != null; ) {
            if (line.startsWith("off")) {
                s.setKeepAlive(false);
            }
            dump(s);
        }
    }
}
