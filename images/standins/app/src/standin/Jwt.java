package standin;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.time.Instant;
import java.util.Base64;
import java.util.UUID;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/** JSON Web Tokens signed with HMAC-SHA256 (RFC 7519, RFC 7518 section 3.2) under jwt.secret. */
final class Jwt {
    /** RFC 7518 3.2: the key must be at least as long as the hash output. */
    static final int MINIMUM_SECRET_BYTES = 32;
    private static final Base64.Encoder ENCODER = Base64.getUrlEncoder().withoutPadding();
    private static final Base64.Decoder DECODER = Base64.getUrlDecoder();
    private static final String HEADER = ENCODER.encodeToString(
        "{\"alg\":\"HS256\",\"typ\":\"JWT\"}".getBytes(StandardCharsets.UTF_8));

    private final ObjectMapper json;
    private final SecretKeySpec key;
    private final String issuer;

    Jwt(String secret, String issuer, ObjectMapper json) {
        byte[] bytes = secret.getBytes(StandardCharsets.UTF_8);
        if (bytes.length < MINIMUM_SECRET_BYTES) {
            throw new IllegalArgumentException("jwt.secret must be at least " + MINIMUM_SECRET_BYTES + " bytes");
        }
        this.key = new SecretKeySpec(bytes, "HmacSHA256");
        this.issuer = issuer;
        this.json = json;
    }

    String issue(String subject, long ttlSeconds) {
        long now = Instant.now().getEpochSecond();
        ObjectNode claims = json.createObjectNode().put("iss", issuer).put("sub", subject).put("iat", now)
            .put("exp", now + ttlSeconds).put("jti", UUID.randomUUID().toString());
        String body = HEADER + "." + ENCODER.encodeToString(claims.toString().getBytes(StandardCharsets.UTF_8));
        return body + "." + ENCODER.encodeToString(sign(body));
    }

    /** The token's subject when its signature, algorithm and expiry hold; null otherwise. */
    String verify(String token) {
        String[] parts = token.split("\\.", -1);
        if (parts.length != 3) {
            return null;
        }
        try {
            byte[] signature = DECODER.decode(parts[2]);
            if (!MessageDigest.isEqual(signature, sign(parts[0] + "." + parts[1]))) {
                return null;
            }
            JsonNode header = json.readTree(DECODER.decode(parts[0]));
            JsonNode claims = json.readTree(DECODER.decode(parts[1]));
            if (!"HS256".equals(header.path("alg").asText()) || !claims.path("exp").canConvertToLong()
                || claims.path("exp").asLong() <= Instant.now().getEpochSecond() || !claims.path("sub").isTextual()) {
                return null;
            }
            return claims.get("sub").asText();
        } catch (IllegalArgumentException | java.io.IOException e) {
            return null;
        }
    }

    private byte[] sign(String content) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(key);
            return mac.doFinal(content.getBytes(StandardCharsets.US_ASCII));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }
}
