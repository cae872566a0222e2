#version 450
// Q6_K weight rows · Q8_K-quantized input rows, one output per workgroup. Per 256-element super-block,
// as kquants::dot_q6_k: the exact integer sum Σ_g scale_g · Σ (q − 32)·x over its sixteen groups of 16,
// then (d_w·d_x)·isum, added in super-block order: the bits of kquants::dot_q6_k.
// Workgroup (r, c) makes output c·rows + r: matrix × vector for one input row, matrix × matrix for several
// (each workgroup reads its weight row itself; no tiling through shared memory).

layout(local_size_x = 64) in;

// Weight rows of `blocks` 210-byte super-blocks (128 bytes of low nibbles, 64 of high 2-bit pairs, 16
// signed scales, f16 d), back to back, zero-padded to 4 bytes.
layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };
layout(std430, binding = 1) readonly buffer ActQuants { uint xq[]; };
layout(std430, binding = 2) readonly buffer ActScales { float xd[]; };
layout(std430, binding = 3) writeonly buffer Output { float o[]; };

layout(push_constant) uniform Params {
    uint blocks;  // blocks per row (weights and inputs alike)
    uint rows;    // weight rows: the output row stride
    uint row0;    // first weight row of this dispatch
    uint col0;    // first input row of this dispatch
    uint first;   // the first row the weight buffer holds (a weight may be split over several)
} p;

shared float term[64];

uint byte_at(uint offset) {
    return (wq[offset >> 2u] >> ((offset & 3u) * 8u)) & 0xFFu;
}

int x_at(uint block, uint i) {
    return bitfieldExtract(int(xq[block * 64u + (i >> 2u)]), int(8u * (i & 3u)), 8);
}

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint row = p.row0 + gl_WorkGroupID.x;
    const uint col = p.col0 + gl_WorkGroupID.y;
    // Thread t makes block base + t's term exactly as the CPU does; thread 0 adds the terms in block order,
    // as scalar::dot_* does: the same floats added in the same order, so the same bits.
    precise float acc = 0.0;
    for (uint base = 0u; base < p.blocks; base += 64u) {
        const uint b = base + t;
        if (b < p.blocks) {
            const uint xb = col * p.blocks + b;  // the input row's block b
            const uint at = ((row - p.first) * p.blocks + b) * 210u;
            int isum = 0;
            for (uint h = 0u; h < 2u; h++) {
                // Quarter k of half h: elements 128h + 32k + l, low nibbles from ql[64h + 32(k & 1) + l] shifted
                // by 4(k >> 1), high bits from qh[32h + l] at 2k; sixteens 2k and 2k + 1 of the half.
                for (uint k = 0u; k < 4u; k++) {
                    const uint low = at + 64u * h + 32u * (k & 1u);
                    const uint shift = 4u * (k >> 1u);
                    for (uint hf = 0u; hf < 2u; hf++) {
                        int s = 0;
                        for (uint l = 16u * hf; l < 16u * hf + 16u; l++) {
                            const uint q = ((byte_at(low + l) >> shift) & 15u)
                                | (((byte_at(at + 128u + 32u * h + l) >> (2u * k)) & 3u) << 4u);
                            s += (int(q) - 32) * x_at(xb, 128u * h + 32u * k + l);
                        }
                        isum += bitfieldExtract(int(byte_at(at + 192u + 8u * h + 2u * k + hf)), 0, 8) * s;
                    }
                }
            }
            precise float d = unpackHalf2x16(byte_at(at + 208u) | (byte_at(at + 209u) << 8u)).x * xd[xb];
            precise float term_b = d * float(isum);
            term[t] = term_b;
        }
        barrier();
        if (t == 0u) {
            const uint count = min(64u, p.blocks - base);
            for (uint i = 0u; i < count; i++) {
                acc += term[i];
            }
        }
        barrier();
    }
    if (t == 0u) {
        o[col * p.rows + row] = acc;
    }
}
