package dev.sailedge

import android.graphics.ImageFormat
import androidx.camera.core.ImageProxy

/** An NV21 frame of even [width] and [height]; [data] may be longer than the frame (a reused buffer). */
class Nv21Frame(val data: ByteArray, val width: Int, val height: Int)

/**
 * This CameraX image (`YUV_420_888`) as NV21, the layout `sail_session_add_frame` takes as
 * `SAIL_PIXEL_NV21`. The planes' row and pixel strides are honoured (pixel stride 1: separate U and V
 * planes; 2: one interleaved plane, the usual case), through [Nv21.fromYuv420], which CI tests on the host
 * JVM with both layouts. [reuse] is filled when it is large enough.
 *
 * What it does not do: rotate (ask CameraX with `ImageAnalysis.Builder().setOutputImageRotationEnabled(true)`
 * so the model sees the scene upright) or apply `cropRect` (the whole sensor image is sent). An odd width or
 * height loses its last column or row (NV21 needs even sizes).
 */
fun ImageProxy.toNv21(reuse: ByteArray? = null): Nv21Frame {
    require(format == ImageFormat.YUV_420_888) {
        "ImageProxy format $format is not YUV_420_888 (use ImageAnalysis.OUTPUT_IMAGE_FORMAT_YUV_420_888)"
    }
    val (y, u, v) = planes
    val data = Nv21.fromYuv420(
        width, height,
        y.buffer, y.rowStride, y.pixelStride,
        u.buffer, u.rowStride, u.pixelStride,
        v.buffer, v.rowStride, v.pixelStride,
        reuse,
    )
    return Nv21Frame(data, Nv21.evenSize(width), Nv21.evenSize(height))
}
