// AvroDiff is the Java side of schemas/compat's differential test: it asks
// Apache Avro's own SchemaCompatibility for the verdict on every reader/writer
// pair of a corpus, so the Go checker can be held to the reference
// implementation rather than to our reading of the spec.
//
// Run with Java's single-file source launcher (no compile step):
//
//   java -cp "<libs>/*" AvroDiff.java corpus.jsonl verdicts.jsonl
//
// Each input line is {"id": "...", "reader": <schema>, "writer": <schema>},
// optionally with "reader_refs" and "writer_refs": arrays of the schemas each
// side references, dependencies first, parsed before it in the same parser.
// Each output line, in input order, is
//
//   {"id": "...", "verdict": "COMPATIBLE" | "INCOMPATIBLE" | "PARSE_ERROR" | "ERROR",
//    "kinds": [...], "locations": [...], "messages": [...],
//    "reader_error": "...", "writer_error": "...", "error": "..."}
//
// PARSE_ERROR means Avro rejected one or both schemas (reader_error and
// writer_error say which); ERROR means the checker itself threw, which it does
// for example when a reader field's name and aliases match two writer fields.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.apache.avro.Schema;
import org.apache.avro.SchemaCompatibility;

public class AvroDiff {
  private static final ObjectMapper JSON = new ObjectMapper();

  public static void main(String[] args) throws Exception {
    if (args.length != 2) {
      System.err.println("usage: java -cp '<libs>/*' AvroDiff.java <corpus.jsonl> <verdicts.jsonl>");
      System.exit(2);
    }
    int lines = 0;
    try (BufferedReader in = Files.newBufferedReader(Path.of(args[0]), StandardCharsets.UTF_8);
        BufferedWriter out = Files.newBufferedWriter(Path.of(args[1]), StandardCharsets.UTF_8)) {
      String line;
      while ((line = in.readLine()) != null) {
        if (line.isBlank()) {
          continue;
        }
        lines++;
        JsonNode pair = JSON.readTree(line);
        out.write(JSON.writeValueAsString(judge(pair)));
        out.newLine();
      }
    }
    System.err.printf("AvroDiff: %d pairs judged by Apache Avro %s%n", lines,
        Schema.class.getPackage().getImplementationVersion());
  }

  private static ObjectNode judge(JsonNode pair) {
    ObjectNode result = JSON.createObjectNode();
    result.put("id", pair.path("id").asText());
    ArrayNode kinds = result.putArray("kinds");
    ArrayNode locations = result.putArray("locations");
    ArrayNode messages = result.putArray("messages");

    // Each side gets its own parser: the two versions of a schema normally
    // define the same named types, which one parser would reject as redefined.
    // A side's references ("reader_refs", "writer_refs": the schemas defining
    // named types it uses, dependencies first) are parsed into its parser
    // before it, as Confluent's AvroSchema does.
    Schema reader = null;
    Schema writer = null;
    try {
      reader = parseSide(pair, "reader");
    } catch (Exception e) {
      result.put("reader_error", describe(e));
    }
    try {
      writer = parseSide(pair, "writer");
    } catch (Exception e) {
      result.put("writer_error", describe(e));
    }
    if (reader == null || writer == null) {
      result.put("verdict", "PARSE_ERROR");
      return result;
    }

    try {
      SchemaCompatibility.SchemaPairCompatibility c = SchemaCompatibility.checkReaderWriterCompatibility(reader,
          writer);
      result.put("verdict", c.getType().name());
      for (SchemaCompatibility.Incompatibility inc : c.getResult().getIncompatibilities()) {
        kinds.add(inc.getType().name());
        locations.add(inc.getLocation());
        messages.add(inc.getMessage());
      }
    } catch (Exception e) {
      result.put("verdict", "ERROR");
      result.put("error", describe(e));
    }
    return result;
  }

  private static Schema parseSide(JsonNode pair, String side) throws Exception {
    Schema.Parser parser = new Schema.Parser();
    for (JsonNode ref : pair.path(side + "_refs")) {
      parser.parse(JSON.writeValueAsString(ref));
    }
    return parser.parse(JSON.writeValueAsString(pair.get(side)));
  }

  private static String describe(Exception e) {
    return e.getClass().getSimpleName() + ": " + e.getMessage();
  }
}
