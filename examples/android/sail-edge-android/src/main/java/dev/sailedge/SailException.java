package dev.sailedge;

/**
 * A failed sail-edge call: the C status ({@code SailNative.ERR_*}, or {@link SailNative#CANCELLED} when a
 * pulled answer was cancelled) and {@code sail_last_error()}'s message, which names the file, argument or
 * limit at fault.
 *
 * <p>Unchecked, like the platform's own runtime errors, so that the Kotlin wrapper and Java callers are not
 * forced into try blocks around every call. The shim constructs it through {@code (ILjava/lang/String;)V};
 * keep that constructor (see consumer-rules.pro).
 */
public class SailException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** The {@code sail_status} value. */
    public final int status;

    public SailException(int status, String message) {
        super(message);
        this.status = status;
    }

    /** True when the answer was cancelled rather than failed. */
    public boolean isCancelled() {
        return status == SailNative.CANCELLED;
    }
}
