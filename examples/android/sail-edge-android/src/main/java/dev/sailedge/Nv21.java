package dev.sailedge;

import java.nio.ByteBuffer;

/**
 * Packs the three planes of a YUV 4:2:0 image (Android's {@code YUV_420_888}: CameraX {@code ImageProxy},
 * {@code android.media.Image}) into one NV21 array for {@link SailNative#sessionAddFrame}.
 *
 * <p>{@code YUV_420_888} promises only a layout described by strides: the chroma planes are either separate
 * ({@code pixelStride} 1, I420-like) or views into one interleaved plane ({@code pixelStride} 2, NV21- or
 * NV12-like), and every row may be padded ({@code rowStride} above the width). Reading each sample through
 * its strides handles every device. It lives in Java, not in the Kotlin {@code ImageProxy} extension, so that
 * the host-JVM test in CI checks it against both layouts.
 *
 * <p>NV21 needs an even width and height (the runtime checks): an odd last column or row is dropped, so the
 * frame is {@code (width & ~1) x (height & ~1)} — use {@link #evenSize}.
 */
public final class Nv21 {
    private Nv21() {}

    /** The NV21 frame's width or height for a plane of {@code size} pixels. */
    public static int evenSize(int size) {
        return size & ~1;
    }

    /** Bytes of an NV21 frame of the even {@code width} x {@code height}. */
    public static int frameBytes(int width, int height) {
        return width * height + width * height / 2;
    }

    /**
     * The planes as NV21: the luma rows, then V U pairs for each 2x2 block. Buffers are read with absolute
     * indices (their positions are left alone); {@code out} is reused when it is large enough (camera frames
     * come 30 times a second; no need for an allocation each).
     */
    public static byte[] fromYuv420(int width, int height,
            ByteBuffer y, int yRowStride, int yPixelStride,
            ByteBuffer u, int uRowStride, int uPixelStride,
            ByteBuffer v, int vRowStride, int vPixelStride,
            byte[] out) {
        int w = evenSize(width);
        int h = evenSize(height);
        int size = frameBytes(w, h);
        byte[] nv21 = out != null && out.length >= size ? out : new byte[size];

        if (yPixelStride == 1) {
            // Whole rows at once: the common case, and the bulk of the bytes.
            ByteBuffer rows = y.duplicate();
            for (int row = 0; row < h; row++) {
                rows.position(row * yRowStride);
                rows.get(nv21, row * w, w);
            }
        } else {
            for (int row = 0; row < h; row++) {
                for (int col = 0; col < w; col++) {
                    nv21[row * w + col] = y.get(row * yRowStride + col * yPixelStride);
                }
            }
        }

        int o = w * h;
        for (int row = 0; row < h / 2; row++) {
            int vRow = row * vRowStride;
            int uRow = row * uRowStride;
            for (int col = 0; col < w / 2; col++) {
                nv21[o++] = v.get(vRow + col * vPixelStride);
                nv21[o++] = u.get(uRow + col * uPixelStride);
            }
        }
        return nv21;
    }
}
