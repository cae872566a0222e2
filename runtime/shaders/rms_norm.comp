#version 450
#extension GL_GOOGLE_include_directive : require
// RMSNorm, one row per workgroup, the CPU's arithmetic exactly (scalar::rms_norm): Σx² in eight lane sums
// (lane l adds elements l, l + 8, … in order) combined as reduce8, plus the tail; ms = Σ / d;
// scale = 1 / √(ms + eps); out = w · (x · scale). Division and root exact (exact.glsl): the CPU's bits.

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Input { float x[]; };
layout(std430, binding = 1) readonly buffer Weight { float w[]; };
layout(std430, binding = 2) writeonly buffer Output { float o[]; };

layout(push_constant) uniform Params {
    uint d;     // row length
    float eps;
} p;

#include "exact.glsl"

shared float lane[9];

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint base = gl_WorkGroupID.x * p.d;
    const uint full = (p.d / 8u) * 8u;
    if (t < 8u) {
        precise float acc = 0.0;
        for (uint i = t; i < full; i += 8u) {
            const float v = x[base + i];
            acc = acc + v * v;
        }
        lane[t] = acc;
    } else if (t == 8u) {
        precise float tail = 0.0;
        for (uint i = full; i < p.d; i++) {
            const float v = x[base + i];
            tail = tail + v * v;
        }
        lane[8] = tail;
    }
    barrier();
    precise float total = reduce8(lane[0], lane[1], lane[2], lane[3], lane[4], lane[5], lane[6], lane[7]) + lane[8];
    const float ms = div_rn(total, float(p.d));
    precise float shifted = ms + p.eps;
    const float scale = div_rn(1.0, sqrt_rn(shifted));
    for (uint i = t; i < p.d; i += 64u) {
        precise float v = w[i] * (x[base + i] * scale);
        o[base + i] = v;
    }
}
