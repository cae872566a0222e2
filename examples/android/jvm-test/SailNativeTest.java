package dev.sailedge;

import java.awt.image.BufferedImage;
import java.awt.image.Raster;
import java.io.File;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import javax.imageio.ImageIO;

/**
 * The JNI shim (sail_jni.c) on the host JVM, through the same SailNative class an Android app loads. Run by
 * scripts/ci/jni-test.sh; plain main() and exit status, so CI needs nothing beyond a JDK.
 *
 * <p>Arguments: MODEL MMPROJ IMAGE EXPECTED_FILE, where EXPECTED_FILE holds what
 * {@code sail-edge describe -m MODEL --mmproj MMPROJ --image IMAGE -p QUESTION -n 12} printed.
 */
public final class SailNativeTest {
    static final String QUESTION = "What is in the picture?";
    static final int N = 12;

    static int failures = 0;
    static int checks = 0;

    static void check(boolean ok, String what) {
        checks++;
        if (ok) {
            System.out.println("ok   " + what);
        } else {
            failures++;
            System.out.println("FAIL " + what);
        }
    }

    static void checkEquals(Object expected, Object actual, String what) {
        boolean ok = expected == null ? actual == null : expected.equals(actual);
        check(ok, what + (ok ? "" : "\n     expected: " + expected + "\n     actual:   " + actual));
    }

    /** Runs body, which must throw a SailException with this status and a message containing each word. */
    static void expectSail(int status, String what, Runnable body, String... words) {
        try {
            body.run();
            check(false, what + ": no exception");
        } catch (SailException e) {
            boolean ok = e.status == status;
            for (String w : words) ok &= e.getMessage() != null && e.getMessage().contains(w);
            check(ok, what + " -> " + SailNative.statusName(e.status) + ": " + e.getMessage());
        }
    }

    /** The answer, pulled piece by piece. */
    static String pull(long session, String question, int maxTokens) {
        SailNative.sessionAsk(session, question, maxTokens);
        StringBuilder text = new StringBuilder();
        for (String piece; (piece = SailNative.sessionNext(session)) != null; ) text.append(piece);
        return text.toString();
    }

    /** The answer, pushed to a callback; the status must be DONE. */
    static String push(long session, String question, int maxTokens) {
        StringBuilder text = new StringBuilder();
        int status = SailNative.sessionAskCallback(session, question, maxTokens, piece -> {
            text.append(piece);
            return true;
        });
        checkEquals(SailNative.DONE, status, "callback answer ends with SAIL_DONE");
        return text.toString();
    }

    /** The image's pixels as packed RGB rows of `stride` bytes, from the raster (not getRGB, which runs
     * grey images through a colour-space conversion and would change the values). */
    static byte[] rgb(BufferedImage image, int width, int height, int stride) {
        Raster r = image.getRaster();
        int bands = r.getNumBands();
        byte[] out = new byte[stride * height];
        for (int y = 0; y < height; y++) {
            for (int x = 0; x < width; x++) {
                for (int c = 0; c < 3; c++) {
                    out[y * stride + 3 * x + c] = (byte) r.getSample(x, y, bands >= 3 ? c : 0);
                }
            }
        }
        return out;
    }

    /** Packed RGB to NV21 with BT.601 limited range (the runtime's default for YUV frames, frame.rs), chroma
     * from the mean of each 2x2 block. */
    static byte[] nv21(byte[] rgb, int width, int height) {
        byte[] out = new byte[width * height * 3 / 2];
        for (int y = 0; y < height; y++) {
            for (int x = 0; x < width; x++) {
                int i = 3 * (y * width + x);
                int r = rgb[i] & 255, g = rgb[i + 1] & 255, b = rgb[i + 2] & 255;
                out[y * width + x] = (byte) (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16);
            }
        }
        int o = width * height;
        for (int y = 0; y < height; y += 2) {
            for (int x = 0; x < width; x += 2) {
                int r = 0, g = 0, b = 0;
                for (int dy = 0; dy < 2; dy++) {
                    for (int dx = 0; dx < 2; dx++) {
                        int i = 3 * ((y + dy) * width + x + dx);
                        r += rgb[i] & 255;
                        g += rgb[i + 1] & 255;
                        b += rgb[i + 2] & 255;
                    }
                }
                r = (r + 2) / 4;
                g = (g + 2) / 4;
                b = (b + 2) / 4;
                out[o++] = (byte) (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128); // V (Cr) first: NV21
                out[o++] = (byte) (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128); // U (Cb)
            }
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: SailNativeTest MODEL MMPROJ IMAGE EXPECTED_FILE");
            System.exit(2);
        }
        String model = args[0], mmproj = args[1], image = args[2];
        String expected = new String(Files.readAllBytes(Path.of(args[3])), StandardCharsets.UTF_8);
        if (expected.endsWith("\n")) expected = expected.substring(0, expected.length() - 1); // describe's
        check(!expected.isEmpty(), "expected answer is not empty");

        // --- the library
        check(SailNative.version() != null && !SailNative.version().isEmpty(), "version " + SailNative.version());
        checkEquals("SAIL_ERR_IO", SailNative.statusName(SailNative.ERR_IO), "status name of -2");
        SailNative.setLogLevel(SailNative.LOG_WARN);

        // --- bad engine arguments
        expectSail(SailNative.ERR_ARG, "engine without a model path",
                () -> SailNative.engineOpen(null, mmproj, 0, 0, 0, null), "model");
        expectSail(SailNative.ERR_IO, "engine on a missing model",
                () -> SailNative.engineOpen("/nonexistent/missing-model.gguf", null, 0, 0, 0, null),
                "missing-model.gguf");

        long engine = SailNative.engineOpen(model, mmproj, 0, 0, 0, null);
        check(engine != 0, "engine opened");
        long s = SailNative.sessionNew(engine);
        check(s != 0, "session created");

        // --- the answer equals sail-edge describe's, pulled and pushed
        SailNative.sessionAddImageFile(s, image);
        String pulled = pull(s, QUESTION, N);
        checkEquals(expected, pulled, "pulled answer = sail-edge describe");
        double[] t = SailNative.sessionTimings(s);
        check(t.length == 9 && t[4] >= 1 && t[8] >= 1 && t[8] <= N,
                "timings: " + (int) t[4] + " tiles, " + (int) t[8] + " tokens generated");
        checkEquals(SailNative.DONE, catchStatus(() -> SailNative.sessionNext(s)) , "next after the end: still done");

        SailNative.sessionReset(s);
        SailNative.sessionAddImageFile(s, image);
        checkEquals(pulled, push(s, QUESTION, N), "callback answer = pulled answer");

        // --- the same image as encoded bytes, as an RGB8 frame with padded rows
        SailNative.sessionReset(s);
        byte[] png = Files.readAllBytes(Path.of(image));
        byte[] padded = new byte[png.length + 8];
        System.arraycopy(png, 0, padded, 3, png.length);
        SailNative.sessionAddImageBytes(s, padded, 3, png.length);
        checkEquals(expected, pull(s, QUESTION, N), "image bytes answer = sail-edge describe");

        BufferedImage decoded = ImageIO.read(new File(image));
        int w = decoded.getWidth(), h = decoded.getHeight();
        SailNative.sessionReset(s);
        int stride = 3 * w + 5;
        SailNative.sessionAddFrame(s, rgb(decoded, w, h, stride), w, h, stride, SailNative.PIXEL_RGB8);
        checkEquals(expected, pull(s, QUESTION, N), "RGB8 frame (stride " + stride + ") answer = sail-edge describe");

        // --- NV21: packed here, and through Nv21.fromYuv420 from both YUV_420_888 layouts
        int ew = Nv21.evenSize(w), eh = Nv21.evenSize(h);
        byte[] nv21 = nv21(rgb(decoded, ew, eh, 3 * ew), ew, eh);
        checkNv21Planes(nv21, ew, eh);
        SailNative.sessionReset(s);
        SailNative.sessionAddFrame(s, nv21, ew, eh, 0, SailNative.PIXEL_NV21);
        String nv21Answer = pull(s, QUESTION, N);
        check(!nv21Answer.isEmpty(), "NV21 frame " + ew + "x" + eh + " answered: " + nv21Answer);

        // --- bad arguments name what is wrong
        expectSail(SailNative.ERR_ARG, "image path null", () -> SailNative.sessionAddImageFile(s, null), "path");
        expectSail(SailNative.ERR_IO, "missing image file",
                () -> SailNative.sessionAddImageFile(s, "/nonexistent/no-such-picture.png"), "no-such-picture.png");
        expectSail(SailNative.ERR_FORMAT, "bytes that are no image",
                () -> SailNative.sessionAddImageBytes(s, "not a picture".getBytes(StandardCharsets.UTF_8), 0, 13));
        expectSail(SailNative.ERR_ARG, "image bytes out of the array",
                () -> SailNative.sessionAddImageBytes(s, png, 10, png.length), "offset");
        expectSail(SailNative.ERR_ARG, "NV21 frame shorter than its size",
                () -> SailNative.sessionAddFrame(s, new byte[100], ew, eh, 0, SailNative.PIXEL_NV21), "needed");
        expectSail(SailNative.ERR_ARG, "NV21 frame of odd height",
                () -> SailNative.sessionAddFrame(s, new byte[w * (h + 1) * 3 / 2], w, h | 1, 0, SailNative.PIXEL_NV21),
                "even");
        expectSail(SailNative.ERR_ARG, "unknown pixel format",
                () -> SailNative.sessionAddFrame(s, new byte[64], 4, 4, 0, 1000), "1000");
        expectSail(SailNative.ERR_ARG, "session on engine 0", () -> SailNative.sessionNew(0));
        expectSail(SailNative.ERR_ARG, "ask without a question", () -> SailNative.sessionAsk(s, null, N), "question");
        expectSail(SailNative.ERR_ARG, "callback null",
                () -> SailNative.sessionAskCallback(s, QUESTION, N, null), "callback");

        // --- cancellation from a second thread: the stream ends as cancelled, the session answers after
        SailNative.sessionReset(s);
        SailNative.sessionAddImageFile(s, image);
        SailNative.sessionAsk(s, QUESTION, N);
        String first = SailNative.sessionNext(s);
        check(first != null, "first piece before the cancel");
        Thread canceller = new Thread(() -> SailNative.sessionCancel(s));
        canceller.start();
        canceller.join();
        expectSail(SailNative.CANCELLED, "pulled answer after a cancel from another thread",
                () -> SailNative.sessionNext(s));
        checkEquals(expected, pull(s, QUESTION, N), "after the cancel, the same question answers as describe");

        SailNative.sessionReset(s);
        SailNative.sessionAddImageFile(s, image);
        CountDownLatch cancelled = new CountDownLatch(1);
        StringBuilder partial = new StringBuilder();
        int status = SailNative.sessionAskCallback(s, QUESTION, N, piece -> {
            partial.append(piece);
            if (cancelled.getCount() > 0) {
                new Thread(() -> {
                    SailNative.sessionCancel(s);
                    cancelled.countDown();
                }).start();
                try {
                    cancelled.await();
                } catch (InterruptedException e) {
                    throw new RuntimeException(e);
                }
            }
            return true;
        });
        checkEquals(SailNative.CANCELLED, status, "callback answer cancelled from another thread");
        check(expected.startsWith(partial.toString()), "cancelled answer is a prefix: " + partial);
        checkEquals(expected, push(s, QUESTION, N), "after the cancel, the callback form answers as describe");

        // --- the callback stops the answer, or throws
        SailNative.sessionReset(s);
        SailNative.sessionAddImageFile(s, image);
        List<String> pieces = new ArrayList<>();
        status = SailNative.sessionAskCallback(s, QUESTION, N, piece -> pieces.add(piece) && pieces.size() < 3);
        checkEquals(SailNative.DONE, status, "callback returning false ends as done");
        check(pieces.size() == 3 && expected.startsWith(String.join("", pieces)), "stopped after 3 pieces: " + pieces);

        SailNative.sessionReset(s);
        SailNative.sessionAddImageFile(s, image);
        IllegalStateException thrown = new IllegalStateException("from the callback");
        try {
            SailNative.sessionAskCallback(s, QUESTION, N, piece -> {
                throw thrown;
            });
            check(false, "callback exception propagates");
        } catch (IllegalStateException e) {
            check(e == thrown, "callback exception propagates");
        }

        // --- a long answer through the callback: one local ref per piece must be freed (-Xcheck:jni warns)
        SailNative.sessionReset(s);
        int[] count = {0};
        SailNative.sessionAskCallback(s, "Tell a long story.", 300, piece -> ++count[0] > 0);
        check(count[0] > 64, count[0] + " pieces through the callback");

        // --- strings outside the BMP cross as real UTF-8 (JNI's modified UTF-8 would be refused as not UTF-8)
        SailNative.sessionReset(s);
        SailNative.sessionSetSystem(s, "You answer in emoji 🚀.");
        check(!pull(s, "What is this? 🚀 ünïcödé", 4).isEmpty(), "question with emoji answered");
        SailNative.sessionReset(s);
        SailNative.sessionSetSystem(s, null);

        // --- sampling: the same seed gives the same answer
        SailNative.sessionReset(s);
        SailNative.sessionSetSampling(s, 0.9f, 40, 0.95f, 0.05f, 1.1f, 42);
        String sampled = pull(s, QUESTION, N);
        SailNative.sessionReset(s);
        SailNative.sessionSetSampling(s, 0.9f, 40, 0.95f, 0.05f, 1.1f, 42);
        checkEquals(sampled, pull(s, QUESTION, N), "sampling with seed 42 is repeatable");
        expectSail(SailNative.ERR_ARG, "sampling with top_p 0",
                () -> SailNative.sessionSetSampling(s, 0.9f, 40, 0f, 0.05f, 1.1f, 42), "top_p");
        SailNative.sessionSetSampling(s, 0f, 0, 1f, 0f, 1f, 0);

        // --- two sessions on one engine, on two threads at once
        AtomicReference<String> other = new AtomicReference<>();
        Thread second = new Thread(() -> {
            long s2 = SailNative.sessionNew(engine);
            try {
                SailNative.sessionAddImageFile(s2, image);
                other.set(pull(s2, QUESTION, N));
            } finally {
                SailNative.sessionFree(s2);
            }
        });
        second.start();
        SailNative.sessionReset(s);
        SailNative.sessionAddImageFile(s, image);
        String mine = pull(s, QUESTION, N);
        second.join();
        checkEquals(expected, mine, "concurrent session 1 = sail-edge describe");
        checkEquals(expected, other.get(), "concurrent session 2 = sail-edge describe");

        // --- freeing: the engine may go first; a freed handle is an argument error, not a crash
        SailNative.engineFree(engine);
        SailNative.sessionReset(s);
        SailNative.sessionAddImageFile(s, image);
        checkEquals(expected, pull(s, QUESTION, N), "session answers after its engine was freed");
        SailNative.sessionFree(s);
        expectSail(SailNative.ERR_ARG, "freed session", () -> SailNative.sessionReset(s), "not a live");
        SailNative.sessionFree(0);
        SailNative.engineFree(0);
        SailNative.setLogLevel(SailNative.LOG_OFF);

        System.out.println(checks - failures + "/" + checks + " checks passed");
        System.exit(failures == 0 ? 0 : 1);
    }

    /** The status sessionNext ends with: DONE for null, else the SailException's. */
    static int catchStatus(Runnable next) {
        try {
            next.run();
            return SailNative.DONE;
        } catch (SailException e) {
            return e.status;
        }
    }

    /** Nv21.fromYuv420 rebuilds `nv21` from I420-like planes (pixel stride 1) and from an interleaved V U
     * plane (pixel stride 2, the usual Android camera layout), both with padded rows. */
    static void checkNv21Planes(byte[] nv21, int w, int h) {
        int yRow = w + 24, cRow = w / 2 + 12;
        ByteBuffer y = ByteBuffer.allocateDirect(yRow * h);
        for (int r = 0; r < h; r++) for (int c = 0; c < w; c++) y.put(r * yRow + c, nv21[r * w + c]);

        ByteBuffer u = ByteBuffer.allocateDirect(cRow * h / 2), v = ByteBuffer.allocateDirect(cRow * h / 2);
        for (int r = 0; r < h / 2; r++) {
            for (int c = 0; c < w / 2; c++) {
                v.put(r * cRow + c, nv21[w * h + r * w + 2 * c]);
                u.put(r * cRow + c, nv21[w * h + r * w + 2 * c + 1]);
            }
        }
        byte[] planar = Nv21.fromYuv420(w, h, y, yRow, 1, u, cRow, 1, v, cRow, 1, null);
        check(java.util.Arrays.equals(nv21, planar), "Nv21.fromYuv420, planar chroma (pixel stride 1)");

        // One V U V U … plane with rows of w + 16 bytes; U is the view one byte in, as Android hands it out.
        int vuRow = w + 16;
        ByteBuffer vu = ByteBuffer.allocateDirect(vuRow * (h / 2));
        for (int r = 0; r < h / 2; r++) for (int c = 0; c < w; c++) vu.put(r * vuRow + c, nv21[w * h + r * w + c]);
        ByteBuffer vView = vu.duplicate();
        vView.limit(vuRow * (h / 2 - 1) + w - 1);
        vu.position(1);
        ByteBuffer uView = vu.slice();
        byte[] reuse = new byte[nv21.length + 10];
        byte[] interleaved = Nv21.fromYuv420(w, h, y, yRow, 1, uView, vuRow, 2, vView.slice(), vuRow, 2, reuse);
        check(interleaved == reuse && java.util.Arrays.equals(nv21, java.util.Arrays.copyOf(interleaved, nv21.length)),
                "Nv21.fromYuv420, interleaved chroma (pixel stride 2), output array reused");

        // Odd sizes drop the last column and row.
        byte[] odd = Nv21.fromYuv420(w + 1, h + 1, y, yRow, 1, u, cRow, 1, v, cRow, 1, null);
        check(odd.length == nv21.length, "Nv21.fromYuv420 of an odd size gives the even frame");
    }
}
