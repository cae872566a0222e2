#version 450
#extension GL_GOOGLE_include_directive : require
// GELU(x) = x·Φ(x) in place, the CPU's algorithm step for step (kernels::scalar::gelu_f32): the Taylor
// series of erf for −0.5 < x/√2 < 1, else Numerical Recipes' erfc fit with the exponent split so that
// −x²/2 keeps its precision, and the CPU's own exp (Cody–Waite reduction, Cephes polynomial, scaling by
// two powers of two). Every step is one correctly rounded add or multiply (`precise`: nothing fused) or a
// bit operation, with the constants read from the CPU's own tables (binding 1), and 1/(1 + |z|/2) is an
// exact division (exact.glsl): the CPU's bits on both branches.

layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer X { float x[]; };
// ERF_TAYLOR[10], ERFC_NR[10], GELU_CLAMP, GELU_TAYLOR_LO, GELU_TAYLOR_HI, 1/√2 (kernels::scalar's
// constants, in that order: shaders::gelu_constants).
layout(std430, binding = 1) readonly buffer Consts { float c[]; };

layout(push_constant) uniform Params {
    uint n;
} p;

#include "exact.glsl"

// Offsets into the constant table (the exp constants are exact.glsl's).
const uint TAYLOR = 0u;
const uint NR = 10u;
const uint CLAMP = 20u;
const uint TAYLOR_LO = 21u;
const uint TAYLOR_HI = 22u;
const uint SQRT1_2 = 23u;

// e^(a + b) (scalar::exp_sum).
float exp_sum(float a, float b) {
    precise float s = a + b;
    const float sc = clamp_keep_nan(s, EXP_LO, EXP_HI);
    precise float v = sc * LOG2E;
    precise float t = v + ROUND_MAGIC;
    precise float nf = t - ROUND_MAGIC;
    const int n = floatBitsToInt(t) - floatBitsToInt(ROUND_MAGIC);
    precise float m1 = nf * EXP_C1;
    precise float d1 = a - m1;
    precise float m2 = nf * EXP_C2;
    precise float d2 = d1 - m2;
    precise float r = d2 + b;
    const float y = exp_finish(n, r);
    return (s < EXP_LO) ? 0.0 : y;
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
    const float t = div_rn(1.0, den);
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
