#version 450
#extension GL_GOOGLE_include_directive : require
// Softmax of rows in place, one row per workgroup, the CPU's arithmetic exactly (scalar::softmax_in_place):
// the row's maximum, e = exp_f32(x − max) (the CPU's exp), their sum in eight lane sums combined as reduce8
// plus the tail, then e · (1 / sum) with an exact division: the CPU's bits. For attention, row r of a
// [heads, nq, stride] score block is query i = r mod nq; with causal masking (first ≠ 0xFFFFFFFF) query i
// sits at position first + i and its row is its first min(first + i + 1, n) entries.

layout(local_size_x = 64) in;

layout(std430, binding = 0) buffer X { float x[]; };

layout(push_constant) uniform Params {
    uint n;       // row length (and stride)
    uint nq;      // rows per head (causal masking only)
    uint first;   // position of query 0, or 0xFFFFFFFF: every row is whole
} p;

#include "exact.glsl"

shared float red[64];
shared float lane[9];

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint row = gl_WorkGroupID.x;
    const uint base = row * p.n;
    uint len = p.n;
    if (p.first != 0xFFFFFFFFu) {
        len = min(p.first + row % p.nq + 1u, p.n);
    }
    // The maximum (exact in any order).
    float m = uintBitsToFloat(0xFF800000u);
    for (uint i = t; i < len; i += 64u) {
        m = max(m, x[base + i]);
    }
    red[t] = m;
    barrier();
    for (uint k = 32u; k > 0u; k >>= 1u) {
        if (t < k) {
            red[t] = max(red[t], red[t + k]);
        }
        barrier();
    }
    const float mx = red[0];
    // Each lane's exps and their running sum, in the CPU's order.
    const uint full = (len / 8u) * 8u;
    if (t < 8u) {
        precise float acc = 0.0;
        for (uint i = t; i < full; i += 8u) {
            precise float shifted = x[base + i] - mx;
            const float e = exp_f32(shifted);
            x[base + i] = e;
            acc = acc + e;
        }
        lane[t] = acc;
    } else if (t == 8u) {
        precise float tail = 0.0;
        for (uint i = full; i < len; i++) {
            precise float shifted = x[base + i] - mx;
            const float e = exp_f32(shifted);
            x[base + i] = e;
            tail = tail + e;
        }
        lane[8] = tail;
    }
    memoryBarrierBuffer();
    barrier();
    precise float total = reduce8(lane[0], lane[1], lane[2], lane[3], lane[4], lane[5], lane[6], lane[7]) + lane[8];
    const float inv = div_rn(1.0, total);
    for (uint i = t; i < len; i += 64u) {
        precise float v = x[base + i] * inv;
        x[base + i] = v;
    }
}
