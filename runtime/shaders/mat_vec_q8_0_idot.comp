#version 450
#extension GL_EXT_spirv_intrinsics : require
// mat_vec_q8_0 with each block's integer sum from OpSDot (4 bytes × 4 bytes per instruction): the same
// exact sums, so the same bits. Q8_0 weight rows · Q8_0-quantized input rows (kernels::quantize_q8_0_activations), one output per
// workgroup: each block's integer sum is exact in 32-bit ints (any device: the bytes are unpacked from
// 32-bit words, no 8-bit storage or integer-dot feature needed) and scaled as the CPU scales it,
// isum · (d_w · d_x), and the terms added in block order: the bits of scalar::dot_q8_0.
// Workgroup (r, c) makes output c·rows + r: matrix × vector for one input row, matrix × matrix for several
// (each workgroup reads its weight row itself; no tiling through shared memory).

layout(local_size_x = 64) in;

// Weight rows of `blocks` 34-byte blocks (f16 scale, 32 signed bytes), back to back, zero-padded to 4 bytes.
layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };
// The activation's 32 signed bytes per block, 8 words per block.
layout(std430, binding = 1) readonly buffer ActQuants { uint xq[]; };
// The activation blocks' scales.
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

// SPV_KHR_integer_dot_product's OpSDot and OpSUDot on words of four packed 8-bit values (format 0:
// PackedVectorFormat4x8Bit): Σ of the four products, exact in 32-bit ints, in one instruction where the
// device has it (shaderIntegerDotProduct; the kernel is only made on such devices).
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot4x8(uint a, uint b, spirv_literal int format);
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4452)
int sudot4x8(uint signed_a, uint unsigned_b, spirv_literal int format);

// Four bytes from any byte offset (blocks are not word-aligned).
uint word_at(uint offset) {
    return byte_at(offset) | (byte_at(offset + 1u) << 8u) | (byte_at(offset + 2u) << 16u) | (byte_at(offset + 3u) << 24u);
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
            const uint at = ((row - p.first) * p.blocks + b) * 34u;
            const float dw = unpackHalf2x16(byte_at(at) | (byte_at(at + 1u) << 8u)).x;
            int isum = 0;
            for (uint j = 0u; j < 8u; j++) {
                isum += sdot4x8(word_at(at + 2u + 4u * j), xq[xb * 8u + j], 0);
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
