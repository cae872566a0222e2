#version 450
// The projector's pixel shuffle (projector::pixel_shuffle): a grid × grid map of c-wide features becomes
// (grid/s)² tokens of s²·c, each the s × s neighbourhood's features side by side. v2 orders tokens
// row-major over the merged grid, v1 transposed. One thread per output value; a copy, so exact.

layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer Input { float vit[]; };
layout(std430, binding = 1) writeonly buffer Output { float o[]; };

layout(push_constant) uniform Params {
    uint grid;
    uint c;
    uint scale;
    uint v1;      // 1: version v1
} p;

void main() {
    const uint idx = gl_GlobalInvocationID.x;
    const uint g2 = p.grid / p.scale;
    const uint width = p.c * p.scale * p.scale;
    if (idx >= g2 * g2 * width) {
        return;
    }
    const uint token = idx / width;
    const uint within = idx % width;
    const uint jk = within / p.c;
    const uint ch = within % p.c;
    const uint j = jk / p.scale;
    const uint k = jk % p.scale;
    const uint a = (p.v1 != 0u) ? token % g2 : token / g2;
    const uint b = (p.v1 != 0u) ? token / g2 : token % g2;
    const uint src = (p.scale * a + j) * p.grid + (p.scale * b + k);
    o[idx] = vit[src * p.c + ch];
}
