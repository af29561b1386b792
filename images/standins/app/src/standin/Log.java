package standin;

import java.time.Instant;
import java.util.Locale;

/** One line per event on stdout (the container's log), at LOGGING_LEVEL_ROOT or above. */
final class Log {
    private static volatile int threshold = 2;
    private static final String[] LEVELS = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"};

    private Log() {
    }

    static void level(String name) {
        for (int i = 0; i < LEVELS.length; i++) {
            if (LEVELS[i].equals(name == null ? "INFO" : name.toUpperCase(Locale.ROOT))) {
                threshold = i;
            }
        }
    }

    static void debug(String message) {
        write(1, message);
    }

    static void info(String message) {
        write(2, message);
    }

    static void warn(String message) {
        write(3, message);
    }

    static void error(String message) {
        write(4, message);
    }

    private static void write(int level, String message) {
        if (level >= threshold) {
            String thread = Thread.currentThread().getName();
            System.out.println(Instant.now() + " " + LEVELS[level] + " [" + (thread.isEmpty() ? "request" : thread)
                + "] " + message);
        }
    }
}
