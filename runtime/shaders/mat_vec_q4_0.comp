#version 450
// Q4_0 weight rows · Q8_0-quantized input rows, one output per workgroup, as mat_vec_q8_0: exact
// integer block sums ((nibble − 8) · x), each scaled as scalar::dot_q4_0 scales it, isum · (d_w · d_x);
// the terms added in block order: the bits of scalar::dot_q4_0.
// Workgroup (r, c) makes output c·rows + r: matrix × vector for one input row, matrix × matrix for several
// (each workgroup reads its weight row itself; no tiling through shared memory).

layout(local_size_x = 64) in;

// Weight rows of `blocks` 18-byte blocks (f16 scale; 16 bytes: elements 0..16 in the low nibbles, 16..32 in
// the high ones), back to back, zero-padded to 4 bytes.
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
    return bitfieldExtract(int(xq[block * 8u + (i >> 2u)]), int(8u * (i & 3u)), 8);
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
            const uint at = ((row - p.first) * p.blocks + b) * 18u;
            const float dw = unpackHalf2x16(byte_at(at) | (byte_at(at + 1u) << 8u)).x;
            int isum = 0;
            for (uint j = 0u; j < 16u; j++) {
                const uint q = byte_at(at + 2u + j);
                isum += (int(q & 15u) - 8) * x_at(xb, j);
                isum += (int(q >> 4u) - 8) * x_at(xb, j + 16u);
            }
            precise float term_b = float(isum) * (dw * xd[xb]);
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
