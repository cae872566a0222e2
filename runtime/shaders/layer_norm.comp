#version 450
#extension GL_GOOGLE_include_directive : require
// LayerNorm with weight and bias, one row per workgroup, the CPU's arithmetic exactly (scalar::layer_norm):
// mean = Σx / d and var = Σ(x − mean)² / d, each sum in eight lane sums combined as reduce8 plus the tail;
// out = ((x − mean) · (1 / √(var + eps))) · w + b. Division and root exact (exact.glsl): the CPU's bits.

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Input { float x[]; };
layout(std430, binding = 1) readonly buffer Weight { float w[]; };
layout(std430, binding = 2) readonly buffer Bias { float bias[]; };
layout(std430, binding = 3) writeonly buffer Output { float o[]; };

layout(push_constant) uniform Params {
    uint d;
    float eps;
} p;

#include "exact.glsl"

shared float lane[9];

// Σ (x − m)^power over the row (power 1 with m = 0: Σx), the CPU's order; every thread gets the total.
float row_sum(uint t, uint base, float m, bool squares) {
    const uint full = (p.d / 8u) * 8u;
    if (t < 8u) {
        precise float acc = 0.0;
        for (uint i = t; i < full; i += 8u) {
            precise float v = x[base + i] - m;
            acc = squares ? acc + v * v : acc + x[base + i];
        }
        lane[t] = acc;
    } else if (t == 8u) {
        precise float tail = 0.0;
        for (uint i = full; i < p.d; i++) {
            precise float v = x[base + i] - m;
            tail = squares ? tail + v * v : tail + x[base + i];
        }
        lane[8] = tail;
    }
    barrier();
    precise float total = reduce8(lane[0], lane[1], lane[2], lane[3], lane[4], lane[5], lane[6], lane[7]) + lane[8];
    barrier();
    return total;
}

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint base = gl_WorkGroupID.x * p.d;
    const float mean = div_rn(row_sum(t, base, 0.0, false), float(p.d));
    const float var = div_rn(row_sum(t, base, mean, true), float(p.d));
    precise float shifted = var + p.eps;
    const float inv = div_rn(1.0, sqrt_rn(shifted));
    for (uint i = t; i < p.d; i += 64u) {
        precise float v = (x[base + i] - mean) * inv * w[i] + bias[i];
        o[base + i] = v;
    }
}
