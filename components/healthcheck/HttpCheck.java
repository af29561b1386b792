// The default healthcheck of the platform's Java services: needs only the `java` every service image has, no
// curl or wget. Exit 0 when the URL answers 2xx within the timeout, 1 otherwise. Compiled with
// `javac --release 11 -g:none HttpCheck.java` into HttpCheck.class beside it (tests/test_app_healthcheck.py
// checks the class is this source's).
import java.net.HttpURLConnection;
import java.net.URL;

public final class HttpCheck {
    public static void main(String[] args) {
        try {
            HttpURLConnection connection = (HttpURLConnection) new URL(args[0]).openConnection();
            connection.setConnectTimeout(3000);
            connection.setReadTimeout(3000);
            int status = connection.getResponseCode();
            System.exit(status >= 200 && status < 300 ? 0 : 1);
        } catch (Exception e) {
            System.exit(1);
        }
    }
}
