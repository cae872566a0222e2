#version 450
// GELU(x) = x·Φ(x) in place, the CPU's algorithm step for step (kernels::scalar::gelu_f32): the Taylor
// series of erf for −0.5 < x/√2 < 1, else Numerical Recipes' erfc fit with the exponent split so that
// −x²/2 keeps its precision, and the CPU's own exp (Cody–Waite reduction, Cephes polynomial, scaling by
// two powers of two). Every step is one correctly rounded add or multiply (`precise`: nothing fused) or a
// bit operation, with the constants read from the CPU's own tables (binding 1), so the Taylor branch gives
// the CPU's bits; the erfc branch differs only through 1/(1 + |z|/2), which Vulkan computes within 2.5 ULP.

layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer X { float x[]; };
// ERF_TAYLOR[10], ERFC_NR[10], EXP_P[6], EXP_C1, EXP_C2, LOG2E, EXP_LO, EXP_HI, ROUND_MAGIC, GELU_CLAMP,
// GELU_TAYLOR_LO, GELU_TAYLOR_HI, 1/√2 (kernels::scalar's constants, in that order).
layout(std430, binding = 1) readonly buffer Consts { float c[]; };

layout(push_constant) uniform Params {
    uint n;
} p;

const uint TAYLOR = 0u;
const uint NR = 10u;
const uint EXP_P = 20u;
const uint C1 = 26u;
const uint C2 = 27u;
const uint LOG2E = 28u;
const uint EXP_LO = 29u;
const uint EXP_HI = 30u;
const uint MAGIC = 31u;
const uint CLAMP = 32u;
const uint TAYLOR_LO = 33u;
const uint TAYLOR_HI = 34u;
const uint SQRT1_2 = 35u;

// min(max(v, lo), hi) letting NaN through, in the CPU's operand order.
float clamp_keep_nan(float v, float lo, float hi) {
    float r = (hi < v) ? hi : v;
    return (lo > r) ? lo : r;
}

// e^r · 2ⁿ (scalar::exp_finish).
float exp_finish(int n, float r) {
    precise float q = c[EXP_P];
    for (uint i = 1u; i < 6u; i++) {
        precise float m = q * r;
        q = m + c[EXP_P + i];
    }
    precise float rr = r * r;
    precise float pr = q * rr;
    precise float y0 = pr + r;
    precise float y = y0 + 1.0;
    const int n1 = n >> 1;
    const int n2 = n - n1;
    const float s1 = intBitsToFloat((n1 + 127) << 23);
    const float s2 = intBitsToFloat((n2 + 127) << 23);
    precise float ys = y * s1;
    precise float out_ = ys * s2;
    return out_;
}

// e^(a + b) (scalar::exp_sum).
float exp_sum(float a, float b) {
    precise float s = a + b;
    const float sc = clamp_keep_nan(s, c[EXP_LO], c[EXP_HI]);
    precise float v = sc * c[LOG2E];
    precise float t = v + c[MAGIC];
    precise float nf = t - c[MAGIC];
    const int n = floatBitsToInt(t) - floatBitsToInt(c[MAGIC]);
    precise float m1 = nf * c[C1];
    precise float d1 = a - m1;
    precise float m2 = nf * c[C2];
    precise float d2 = d1 - m2;
    precise float r = d2 + b;
    const float y = exp_finish(n, r);
    return (s < c[EXP_LO]) ? 0.0 : y;
}

void main() {
    const uint i = gl_GlobalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    const float xv = x[i];
    const float xc = clamp_keep_nan(xv, -c[CLAMP], c[CLAMP]);
    precise float z = xc * c[SQRT1_2];
    const float az = uintBitsToFloat(floatBitsToUint(z) & 0x7FFFFFFFu);
    // Taylor branch.
    precise float u = z * z;
    precise float q = c[TAYLOR];
    for (uint k = 1u; k < 10u; k++) {
        precise float m = q * u;
        q = m + c[TAYLOR + k];
    }
    precise float zq = z * q;
    precise float hz = 0.5 * zq;
    precise float phi_small = 0.5 + hz;
    // erfc branch.
    precise float ha = 0.5 * az;
    precise float den = 1.0 + ha;
    precise float t = 1.0 / den;
    precise float e = c[NR];
    for (uint k = 1u; k < 10u; k++) {
        precise float m = e * t;
        e = m + c[NR + k];
    }
    const float xh = uintBitsToFloat(floatBitsToUint(xc) & 0xFFFFF000u);
    precise float xl = xc - xh;
    precise float hh = xh * xh;
    precise float a = -0.5 * hh;
    precise float sum = xh + xc;
    precise float lx = xl * sum;
    precise float bl = -0.5 * lx;
    precise float b = bl + e;
    precise float ht = 0.5 * t;
    precise float half_erfc = ht * exp_sum(a, b);
    precise float one_minus = 1.0 - half_erfc;
    const float phi_large = (xc < 0.0) ? half_erfc : one_minus;
    const float phi = (z < c[TAYLOR_HI] && z > c[TAYLOR_LO]) ? phi_small : phi_large;
    precise float out_ = xv * phi;
    x[i] = out_;
}
