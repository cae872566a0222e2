#version 450
// gate = silu(gate) · up in place (the FFN's SwiGLU): silu(g) = g / (1 + e^−g), as scalar::silu_mul.
// Vulkan's exp is good to 3 + 2·|x| ULP (the CPU's exp_f32 to 2), so the results agree within a few ULP
// that grow with |g|, not bit for bit.

layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer Gate { float g[]; };
layout(std430, binding = 1) readonly buffer Up { float u[]; };

layout(push_constant) uniform Params {
    uint n;
} p;

void main() {
    const uint i = gl_GlobalInvocationID.x;
    if (i < p.n) {
        const float x = g[i];
        g[i] = (x / (1.0 + exp(-x))) * u[i];
    }
}
