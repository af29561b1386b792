package standin;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Spring's property sources, as far as the stack uses them: the environment (relaxed binding: property
 * spring.datasource.url is env SPRING_DATASOURCE_URL) above the config tree that SPRING_CONFIG_IMPORT names
 * (optional:configtree:DIR/, one file per property, its name the property's, its content the value with a
 * trailing newline trimmed: Spring Boot's ConfigTreeConfigDataLoader, Option.AUTO_TRIM_TRAILING_NEW_LINE).
 */
final class Config {
    private final Map<String, String> env;
    private final Map<String, String> tree = new HashMap<>();

    Config(Map<String, String> env) {
        this.env = env;
        String imports = env.getOrDefault("SPRING_CONFIG_IMPORT", "");
        for (String location : imports.split("[,;]")) {
            location = location.strip();
            boolean optional = location.startsWith("optional:");
            if (optional) {
                location = location.substring("optional:".length());
            }
            if (!location.startsWith("configtree:")) {
                continue;
            }
            Path directory = Path.of(location.substring("configtree:".length()));
            if (!Files.isDirectory(directory)) {
                if (optional) {
                    continue;
                }
                throw new IllegalStateException("Config tree " + directory + " does not exist");
            }
            readTree(directory);
        }
    }

    private void readTree(Path directory) {
        try (Stream<Path> files = Files.walk(directory)) {
            for (Path file : (Iterable<Path>) files::iterator) {
                // Kubernetes-style ..data links and hidden files are not properties.
                if (Files.isRegularFile(file) && !file.getFileName().toString().startsWith(".")) {
                    String property = directory.relativize(file).toString().replace('/', '.');
                    String value = Files.readString(file, StandardCharsets.UTF_8);
                    if (value.endsWith("\r\n")) {
                        value = value.substring(0, value.length() - 2);
                    } else if (value.endsWith("\n")) {
                        value = value.substring(0, value.length() - 1);
                    }
                    tree.put(property, value);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("Cannot read config tree " + directory, e);
        }
    }

    /** A property, or null. */
    String get(String property) {
        String fromEnv = env.get(property.toUpperCase(Locale.ROOT).replace('.', '_').replace('-', '_'));
        return fromEnv != null ? fromEnv : tree.get(property);
    }

    String get(String property, String fallback) {
        String value = get(property);
        return value == null || value.isEmpty() ? fallback : value;
    }

    int getInt(String property, int fallback) {
        String value = get(property);
        if (value == null || value.isBlank()) {
            return fallback;
        }
        try {
            return Integer.parseInt(value.strip());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(property + ": expected an integer, got '" + value + "'");
        }
    }

    /** A plain environment variable (not a Spring property), or null. */
    String env(String name) {
        String value = env.get(name);
        return value == null || value.isEmpty() ? null : value;
    }
}
