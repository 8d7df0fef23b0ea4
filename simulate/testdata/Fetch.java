// Fetch is a JDK 17 java.net.http.HttpClient with its defaults (no
// keepalive): GET URL with a request timeout of SECONDS; exit 0 on 200.
// Run as a single source file: java Fetch.java URL SECONDS
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

public class Fetch {
    public static void main(String[] args) throws Exception {
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        HttpRequest req = HttpRequest.newBuilder(URI.create(args[0]))
                .timeout(Duration.ofSeconds(Long.parseLong(args[1]))).build();
        try {
            HttpResponse<String> resp = client.send(req, HttpResponse.BodyHandlers.ofString());
            System.out.println("status " + resp.statusCode());
            System.exit(resp.statusCode() == 200 ? 0 : 1);
        } catch (Exception e) {
            System.out.println("error " + e);
            System.exit(1);
        }
    }
}
