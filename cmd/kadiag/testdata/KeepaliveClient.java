// A real JDK client for kadiag's sockets tests: a java.net.Socket with the
// JVM's default (keepalive off) and one with keepalive tuned through
// jdk.net.ExtendedSocketOptions. Prints what the JDK reads back, then
// "ready", and holds the connections until stdin closes.
import java.net.InetSocketAddress;
import java.net.Socket;
import jdk.net.ExtendedSocketOptions;

public class KeepaliveClient {
    public static void main(String[] args) throws Exception {
        InetSocketAddress peer = new InetSocketAddress(args[0], Integer.parseInt(args[1]));
        Socket off = new Socket();
        off.connect(peer);
        Socket on = new Socket();
        on.setKeepAlive(true);
        on.setOption(ExtendedSocketOptions.TCP_KEEPIDLE, 33);
        on.setOption(ExtendedSocketOptions.TCP_KEEPINTERVAL, 6);
        on.setOption(ExtendedSocketOptions.TCP_KEEPCOUNT, 4);
        on.connect(peer);
        for (Socket s : new Socket[] {off, on}) {
            System.out.println("{\"local_port\":" + s.getLocalPort()
                + ",\"keepalive\":" + (s.getKeepAlive() ? 1 : 0)
                + ",\"idle\":" + s.getOption(ExtendedSocketOptions.TCP_KEEPIDLE)
                + ",\"intvl\":" + s.getOption(ExtendedSocketOptions.TCP_KEEPINTERVAL)
                + ",\"cnt\":" + s.getOption(ExtendedSocketOptions.TCP_KEEPCOUNT) + "}");
        }
        System.out.println("ready");
        System.out.flush();
        System.in.read();
    }
}
