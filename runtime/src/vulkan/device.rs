//! One opened Vulkan device: buffers, compute kernels and batches of dispatches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ash::vk;

use super::shaders::Shader;
use super::{describe, DeviceInfo, Instance, Vulkan, VulkanError};

/// How long a batch may run before the device is declared hung (a GPU that stops answering must not hang
/// the process). `SAIL_EDGE_VULKAN_TIMEOUT_S` overrides it.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// An opened device with one compute queue. Cheap to clone (shared).
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<GpuInner>,
}

struct GpuInner {
    /// Kept alive (and destroyed after the device) through this reference; never released when the device
    /// failed, since the device may still be running work that the instance's driver owns.
    instance: std::mem::ManuallyDrop<Arc<Instance>>,
    raw: ash::Device,
    info: DeviceInfo,
    family: u32,
    /// The queue; submissions to it must not overlap (Vulkan's external synchronisation rule).
    queue: Mutex<vk::Queue>,
    memory: vk::PhysicalDeviceMemoryProperties,
    /// The largest memory heap: no buffer can be larger (and asking Vulkan for one is invalid usage).
    largest_heap: u64,
    /// Nanoseconds a batch may run (see [`Gpu::set_timeout`]).
    timeout_ns: std::sync::atomic::AtomicU64,
    /// Set once the device was lost or timed out: nothing more is submitted and nothing it may still be
    /// using is destroyed.
    failed: AtomicBool,
    failure: Mutex<String>,
}

impl Drop for GpuInner {
    fn drop(&mut self) {
        // SAFETY: every buffer, kernel and batch holds an Arc to this device, so none is left; a device that
        // failed may still be running work, and then it, its memory and the instance are left to the
        // process's end.
        unsafe {
            if !self.failed.load(Ordering::SeqCst) {
                let _ = self.raw.device_wait_idle();
                self.raw.destroy_device(None);
                std::mem::ManuallyDrop::drop(&mut self.instance);
            }
        }
    }
}

impl Gpu {
    /// Open device `index` of [`Vulkan::devices`] with a compute queue.
    pub fn open(vulkan: &Vulkan, index: usize) -> Result<Gpu, VulkanError> {
        let physicals = vulkan.physical_devices()?;
        let &physical = physicals.get(index).ok_or(VulkanError::NoDevice { index, count: physicals.len() })?;
        let instance = vulkan.instance().clone();
        let info = describe(&instance, physical, index);
        // SAFETY: `physical` belongs to this instance.
        let families = unsafe { instance.raw.get_physical_device_queue_family_properties(physical) };
        let family = families
            .iter()
            .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
            .ok_or_else(|| VulkanError::NoComputeQueue { device: info.name.clone() })? as u32;
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default().queue_family_index(family).queue_priorities(&priorities)];
        // The integer dot-product instructions where the device has them (the `_idot` shaders use them).
        let mut int_dot = vk::PhysicalDeviceShaderIntegerDotProductFeatures::default().shader_integer_dot_product(true);
        let mut create = vk::DeviceCreateInfo::default().queue_create_infos(&queues);
        if info.integer_dot_product {
            create = create.push_next(&mut int_dot);
        }
        // SAFETY: `create` and what it points to outlive the call.
        let raw = unsafe { instance.raw.create_device(physical, &create, None) }
            .map_err(|r| VulkanError::call("vkCreateDevice", r, &info.name))?;
        // SAFETY: the family was requested with one queue.
        let queue = unsafe { raw.get_device_queue(family, 0) };
        // SAFETY: as above.
        let memory = unsafe { instance.raw.get_physical_device_memory_properties(physical) };
        let timeout = std::env::var("SAIL_EDGE_VULKAN_TIMEOUT_S")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        tracing::info!(
            "Vulkan device {index}: {} ({:?}, Vulkan {}, {})",
            info.name,
            info.kind,
            info.api_version,
            info.driver
        );
        Ok(Gpu {
            inner: Arc::new(GpuInner {
                instance: std::mem::ManuallyDrop::new(instance),
                raw,
                info,
                family,
                queue: Mutex::new(queue),
                memory,
                largest_heap: memory.memory_heaps_as_slice().iter().map(|h| h.size).max().unwrap_or(0),
                timeout_ns: std::sync::atomic::AtomicU64::new(timeout.as_nanos().min(u64::MAX as u128) as u64),
                failed: AtomicBool::new(false),
                failure: Mutex::new(String::new()),
            }),
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }

    /// How long a batch may run before the device is declared hung and not used again (default 120 s, or
    /// `SAIL_EDGE_VULKAN_TIMEOUT_S`).
    pub fn set_timeout(&self, timeout: Duration) {
        self.inner.timeout_ns.store(timeout.as_nanos().min(u64::MAX as u128) as u64, Ordering::SeqCst);
    }

    /// A compute kernel from one of [`super::shaders`]' shaders.
    pub fn kernel(&self, shader: &Shader) -> Result<Kernel, VulkanError> {
        Kernel::new(self, shader)
    }

    /// A new batch of dispatches, recorded into one command buffer.
    pub fn batch(&self) -> Result<Batch, VulkanError> {
        Batch::new(self)
    }

    fn check_usable(&self) -> Result<(), VulkanError> {
        if self.inner.failed.load(Ordering::SeqCst) {
            let why = self.inner.failure.lock().map(|w| w.clone()).unwrap_or_default();
            return Err(VulkanError::Unusable { device: self.inner.info.name.clone(), why });
        }
        Ok(())
    }

    fn fail(&self, err: &VulkanError) {
        if let Ok(mut w) = self.inner.failure.lock() {
            *w = err.to_string();
        }
        self.inner.failed.store(true, Ordering::SeqCst);
    }

    pub fn name(&self) -> &str {
        &self.inner.info.name
    }
}

/// Where a buffer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Device-local (weights, intermediates): written through a staging copy where the host cannot map it
    /// (discrete GPUs without a resizable BAR), in place on unified memory.
    Device,
    /// Host-visible and coherent (inputs written and outputs read every step).
    Host,
}

/// A storage buffer on a device.
#[derive(Clone)]
pub struct Buffer {
    inner: Arc<BufferInner>,
}

struct BufferInner {
    gpu: Gpu,
    raw: vk::Buffer,
    memory: vk::DeviceMemory,
    bytes: u64,
    /// The host mapping, where the memory is host-visible (coherent: no flushes needed).
    mapped: Option<*mut u8>,
    /// Held while the host copies into or out of the mapping, so two threads never touch it at once.
    host_io: Mutex<()>,
    what: String,
}

// SAFETY: the mapping is only touched by `write` and `read`, which hold `host_io` while they copy; the
// handles are plain values.
unsafe impl Send for BufferInner {}
// SAFETY: as above.
unsafe impl Sync for BufferInner {}

impl Drop for BufferInner {
    fn drop(&mut self) {
        if self.gpu.inner.failed.load(Ordering::SeqCst) {
            return;
        }
        let raw = &self.gpu.inner.raw;
        // SAFETY: batches hold their buffers until their work finished, so the device no longer uses it.
        unsafe {
            if self.mapped.is_some() {
                raw.unmap_memory(self.memory);
            }
            raw.destroy_buffer(self.raw, None);
            raw.free_memory(self.memory, None);
        }
    }
}

impl Buffer {
    /// A buffer of `bytes` (rounded up to 4) for `what` (named in errors).
    pub fn new(gpu: &Gpu, bytes: u64, kind: MemoryKind, what: &str) -> Result<Buffer, VulkanError> {
        gpu.check_usable()?;
        let bytes = bytes.max(4).div_ceil(4) * 4;
        if bytes > gpu.inner.largest_heap {
            return Err(VulkanError::OutOfMemory {
                device: gpu.name().to_string(),
                kind: "device",
                what: format!("{bytes} bytes for {what}: its largest memory heap holds {}", gpu.inner.largest_heap),
            });
        }
        let raw_dev = &gpu.inner.raw;
        let create = vk::BufferCreateInfo::default()
            .size(bytes)
            .usage(
                vk::BufferUsageFlags::STORAGE_BUFFER
                    | vk::BufferUsageFlags::TRANSFER_SRC
                    | vk::BufferUsageFlags::TRANSFER_DST,
            )
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        // A failed call's error; out of memory names the buffer and its size.
        let fail = |call: &'static str, r: vk::Result| match VulkanError::call(call, r, gpu.name()) {
            VulkanError::OutOfMemory { device, kind, .. } => {
                VulkanError::OutOfMemory { device, kind, what: format!("{bytes} bytes for {what} (in {call})") }
            }
            e => e,
        };
        // SAFETY: a valid create info on a live device.
        let raw = unsafe { raw_dev.create_buffer(&create, None) }.map_err(|r| fail("vkCreateBuffer", r))?;
        // SAFETY: `raw` was just created on this device.
        let needs = unsafe { raw_dev.get_buffer_memory_requirements(raw) };
        // Memory properties in order of preference: device buffers fall back to host-visible memory.
        let host = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        let wanted: &[vk::MemoryPropertyFlags] = match kind {
            MemoryKind::Device => &[vk::MemoryPropertyFlags::DEVICE_LOCAL, host],
            MemoryKind::Host => &[host],
        };
        let types = gpu.inner.memory.memory_types_as_slice();
        let pick = |flags: vk::MemoryPropertyFlags| {
            types
                .iter()
                .enumerate()
                .position(|(i, t)| needs.memory_type_bits & (1 << i) != 0 && t.property_flags.contains(flags))
        };
        let Some(type_index) = wanted.iter().find_map(|f| pick(*f)) else {
            // SAFETY: unused buffer of this device.
            unsafe { raw_dev.destroy_buffer(raw, None) };
            return Err(VulkanError::NoMemoryType { device: gpu.name().to_string(), what: what.to_string() });
        };
        let alloc = vk::MemoryAllocateInfo::default().allocation_size(needs.size).memory_type_index(type_index as u32);
        // SAFETY: a valid allocate info on a live device.
        let memory = match unsafe { raw_dev.allocate_memory(&alloc, None) } {
            Ok(m) => m,
            Err(r) => {
                // SAFETY: unused buffer of this device.
                unsafe { raw_dev.destroy_buffer(raw, None) };
                return Err(fail("vkAllocateMemory", r));
            }
        };
        let free = |e: VulkanError| {
            // SAFETY: neither is in use.
            unsafe {
                raw_dev.destroy_buffer(raw, None);
                raw_dev.free_memory(memory, None);
            }
            e
        };
        // SAFETY: fresh memory of a type the buffer accepts, at offset 0.
        unsafe { raw_dev.bind_buffer_memory(raw, memory, 0) }.map_err(|r| free(fail("vkBindBufferMemory", r)))?;
        let host_visible = types[type_index].property_flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE);
        let mapped = if host_visible {
            // SAFETY: host-visible memory, mapped once for the buffer's life.
            let p = unsafe { raw_dev.map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty()) }
                .map_err(|r| free(fail("vkMapMemory", r)))?;
            Some(p as *mut u8)
        } else {
            None
        };
        Ok(Buffer {
            inner: Arc::new(BufferInner {
                gpu: gpu.clone(),
                raw,
                memory,
                bytes,
                mapped,
                host_io: Mutex::new(()),
                what: what.to_string(),
            }),
        })
    }

    /// A device buffer holding `data` (weights: uploaded once).
    pub fn with_data(gpu: &Gpu, data: &[u8], kind: MemoryKind, what: &str) -> Result<Buffer, VulkanError> {
        let b = Buffer::new(gpu, data.len() as u64, kind, what)?;
        b.write(0, data)?;
        Ok(b)
    }

    pub fn bytes(&self) -> u64 {
        self.inner.bytes
    }

    /// Copy `data` into the buffer at byte `offset` (mapped memory directly, else through a staging buffer).
    /// Writing a buffer that a batch on another thread is using gives that batch undefined values (Vulkan's
    /// rule for host writes), never memory unsafety on the host.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), VulkanError> {
        self.check_range(offset, data.len() as u64, "write")?;
        match self.inner.mapped {
            Some(p) => {
                let _io =
                    self.inner.host_io.lock().map_err(|_| VulkanError::Usage("a buffer lock was poisoned".into()))?;
                // SAFETY: the range is inside the mapping (checked above) and this thread alone copies (the
                // lock); batches run to completion before `run` returns, so the device is not using it.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.add(offset as usize), data.len()) };
                Ok(())
            }
            None => {
                let gpu = &self.inner.gpu;
                let staging =
                    Buffer::with_data(gpu, data, MemoryKind::Host, &format!("staging for {}", self.inner.what))?;
                let mut batch = gpu.batch()?;
                batch.copy(&staging, 0, self, offset, data.len() as u64)?;
                batch.run(&format!("the upload of {}", self.inner.what))
            }
        }
    }

    /// Copy `out.len()` bytes from byte `offset` of the buffer.
    pub fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), VulkanError> {
        self.check_range(offset, out.len() as u64, "read")?;
        match self.inner.mapped {
            Some(p) => {
                let _io =
                    self.inner.host_io.lock().map_err(|_| VulkanError::Usage("a buffer lock was poisoned".into()))?;
                // SAFETY: as in `write`.
                unsafe { std::ptr::copy_nonoverlapping(p.add(offset as usize), out.as_mut_ptr(), out.len()) };
                Ok(())
            }
            None => {
                let gpu = &self.inner.gpu;
                let staging =
                    Buffer::new(gpu, out.len() as u64, MemoryKind::Host, &format!("staging for {}", self.inner.what))?;
                let mut batch = gpu.batch()?;
                batch.copy(self, offset, &staging, 0, out.len() as u64)?;
                batch.run(&format!("the download of {}", self.inner.what))?;
                staging.read(0, out)
            }
        }
    }

    /// `f32` values from the start of the buffer.
    /// A buffer holding `values` as little-endian f32.
    pub fn with_floats(gpu: &Gpu, values: &[f32], kind: MemoryKind, what: &str) -> Result<Buffer, VulkanError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Buffer::with_data(gpu, &bytes, kind, what)
    }

    /// Write `values` as little-endian f32 from the start.
    pub fn write_f32(&self, values: &[f32]) -> Result<(), VulkanError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.write(0, &bytes)
    }

    pub fn read_f32(&self, n: usize) -> Result<Vec<f32>, VulkanError> {
        let mut bytes = vec![0u8; n * 4];
        self.read(0, &mut bytes)?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn check_range(&self, offset: u64, len: u64, what: &str) -> Result<(), VulkanError> {
        if offset.checked_add(len).is_none_or(|end| end > self.inner.bytes) {
            return Err(VulkanError::Usage(format!(
                "{what} of {len} bytes at offset {offset} is outside {} ({} bytes)",
                self.inner.what, self.inner.bytes
            )));
        }
        Ok(())
    }

    pub(crate) fn same_device(&self, gpu: &Gpu) -> bool {
        Arc::ptr_eq(&self.inner.gpu.inner, &gpu.inner)
    }
}

/// A compute pipeline: one shader, its storage-buffer bindings and push constants.
#[derive(Clone)]
pub struct Kernel {
    inner: Arc<KernelInner>,
}

struct KernelInner {
    gpu: Gpu,
    name: &'static str,
    bindings: u32,
    push_bytes: u32,
    set_layout: vk::DescriptorSetLayout,
    layout: vk::PipelineLayout,
    pipeline: vk::Pipeline,
}

impl Drop for KernelInner {
    fn drop(&mut self) {
        if self.gpu.inner.failed.load(Ordering::SeqCst) {
            return;
        }
        let raw = &self.gpu.inner.raw;
        // SAFETY: batches hold their kernels until their work finished.
        unsafe {
            raw.destroy_pipeline(self.pipeline, None);
            raw.destroy_pipeline_layout(self.layout, None);
            raw.destroy_descriptor_set_layout(self.set_layout, None);
        }
    }
}

impl Kernel {
    fn new(gpu: &Gpu, shader: &Shader) -> Result<Kernel, VulkanError> {
        gpu.check_usable()?;
        if shader.bindings > MAX_BINDINGS {
            // A batch's descriptor pools are sized for at most this many buffers per dispatch.
            return Err(VulkanError::Usage(format!("shader {}: more than {MAX_BINDINGS} bindings", shader.name)));
        }
        let raw = &gpu.inner.raw;
        let words = ash::util::read_spv(&mut std::io::Cursor::new(shader.spirv))
            .map_err(|e| VulkanError::Usage(format!("shader {}: not SPIR-V: {e}", shader.name)))?;
        let module_info = vk::ShaderModuleCreateInfo::default().code(&words);
        let call = |c: &'static str| move |r: vk::Result| VulkanError::call(c, r, gpu.name());
        // SAFETY: valid SPIR-V words (read_spv checked the magic and length).
        let module = unsafe { raw.create_shader_module(&module_info, None) }.map_err(call("vkCreateShaderModule"))?;
        let bindings: Vec<vk::DescriptorSetLayoutBinding> = (0..shader.bindings)
            .map(|i| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(i)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        let result = (|| {
            // SAFETY: valid create infos on a live device; every object is destroyed on the error paths.
            unsafe {
                let set_layout = raw
                    .create_descriptor_set_layout(
                        &vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings),
                        None,
                    )
                    .map_err(call("vkCreateDescriptorSetLayout"))?;
                let ranges = [vk::PushConstantRange::default()
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
                    .offset(0)
                    .size(shader.push_bytes)];
                let set_layouts = [set_layout];
                let mut layout_info = vk::PipelineLayoutCreateInfo::default().set_layouts(&set_layouts);
                if shader.push_bytes > 0 {
                    layout_info = layout_info.push_constant_ranges(&ranges);
                }
                let layout = match raw.create_pipeline_layout(&layout_info, None) {
                    Ok(l) => l,
                    Err(r) => {
                        raw.destroy_descriptor_set_layout(set_layout, None);
                        return Err(call("vkCreatePipelineLayout")(r));
                    }
                };
                let stage = vk::PipelineShaderStageCreateInfo::default()
                    .stage(vk::ShaderStageFlags::COMPUTE)
                    .module(module)
                    .name(c"main");
                let info = [vk::ComputePipelineCreateInfo::default().stage(stage).layout(layout)];
                match raw.create_compute_pipelines(vk::PipelineCache::null(), &info, None) {
                    Ok(p) => Ok((set_layout, layout, p[0])),
                    Err((_, r)) => {
                        raw.destroy_pipeline_layout(layout, None);
                        raw.destroy_descriptor_set_layout(set_layout, None);
                        Err(call("vkCreateComputePipelines")(r))
                    }
                }
            }
        })();
        // SAFETY: the pipeline (if any) no longer needs the module.
        unsafe { raw.destroy_shader_module(module, None) };
        let (set_layout, layout, pipeline) = result?;
        Ok(Kernel {
            inner: Arc::new(KernelInner {
                gpu: gpu.clone(),
                name: shader.name,
                bindings: shader.bindings,
                push_bytes: shader.push_bytes,
                set_layout,
                layout,
                pipeline,
            }),
        })
    }

    pub fn name(&self) -> &'static str {
        self.inner.name
    }
}

/// Dispatches (and copies) recorded into one command buffer and run with one submission: a whole forward
/// pass goes to the device without a host round trip per operation. Each dispatch waits for the writes of
/// the ones before it (a compute-to-compute barrier).
pub struct Batch {
    gpu: Gpu,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    descriptor_pools: Vec<vk::DescriptorPool>,
    /// Sets left in the last descriptor pool.
    sets_left: u32,
    /// What the recorded commands use, kept alive until they have run.
    kernels: Vec<Kernel>,
    buffers: Vec<Buffer>,
    commands: usize,
    /// Whether the device may still be running this batch's work (then nothing is freed).
    in_flight: bool,
}

/// Descriptor sets per pool (each set holds at most [`MAX_BINDINGS`] storage buffers).
const SETS_PER_POOL: u32 = 64;
const MAX_BINDINGS: u32 = 8;

impl Drop for Batch {
    fn drop(&mut self) {
        if self.in_flight || self.gpu.inner.failed.load(Ordering::SeqCst) {
            return;
        }
        let raw = &self.gpu.inner.raw;
        // SAFETY: the batch's work (if submitted) has completed, so its pools are unused.
        unsafe {
            for p in &self.descriptor_pools {
                raw.destroy_descriptor_pool(*p, None);
            }
            raw.destroy_command_pool(self.pool, None);
        }
    }
}

impl Batch {
    fn new(gpu: &Gpu) -> Result<Batch, VulkanError> {
        gpu.check_usable()?;
        let raw = &gpu.inner.raw;
        let info = vk::CommandPoolCreateInfo::default()
            .queue_family_index(gpu.inner.family)
            .flags(vk::CommandPoolCreateFlags::TRANSIENT);
        // SAFETY: valid create info on a live device.
        let pool = unsafe { raw.create_command_pool(&info, None) }
            .map_err(|r| VulkanError::call("vkCreateCommandPool", r, gpu.name()))?;
        let alloc = vk::CommandBufferAllocateInfo::default()
            .command_pool(pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        let begin = vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        // SAFETY: the pool is fresh and only this batch uses it.
        let cmd = unsafe {
            raw.allocate_command_buffers(&alloc).and_then(|c| raw.begin_command_buffer(c[0], &begin).map(|_| c[0]))
        };
        let cmd = match cmd {
            Ok(c) => c,
            Err(r) => {
                // SAFETY: nothing from the pool was submitted.
                unsafe { raw.destroy_command_pool(pool, None) };
                return Err(VulkanError::call("vkAllocateCommandBuffers", r, gpu.name()));
            }
        };
        Ok(Batch {
            gpu: gpu.clone(),
            pool,
            cmd,
            descriptor_pools: Vec::new(),
            sets_left: 0,
            kernels: Vec::new(),
            buffers: Vec::new(),
            commands: 0,
            in_flight: false,
        })
    }

    fn descriptor_set(&mut self, kernel: &Kernel) -> Result<vk::DescriptorSet, VulkanError> {
        let raw = &self.gpu.inner.raw;
        if self.sets_left == 0 {
            let sizes = [vk::DescriptorPoolSize {
                ty: vk::DescriptorType::STORAGE_BUFFER,
                descriptor_count: SETS_PER_POOL * MAX_BINDINGS,
            }];
            let info = vk::DescriptorPoolCreateInfo::default().max_sets(SETS_PER_POOL).pool_sizes(&sizes);
            // SAFETY: valid create info on a live device.
            let pool = unsafe { raw.create_descriptor_pool(&info, None) }
                .map_err(|r| VulkanError::call("vkCreateDescriptorPool", r, self.gpu.name()))?;
            self.descriptor_pools.push(pool);
            self.sets_left = SETS_PER_POOL;
        }
        let pool = *self.descriptor_pools.last().expect("a pool was just made");
        let layouts = [kernel.inner.set_layout];
        let info = vk::DescriptorSetAllocateInfo::default().descriptor_pool(pool).set_layouts(&layouts);
        // SAFETY: the pool has room for one more set of at most MAX_BINDINGS buffers.
        let set = unsafe { raw.allocate_descriptor_sets(&info) }
            .map_err(|r| VulkanError::call("vkAllocateDescriptorSets", r, self.gpu.name()))?[0];
        self.sets_left -= 1;
        Ok(set)
    }

    /// The device the batch runs on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Record `kernel` over `groups` workgroups with `buffers` bound in order and `push` as its push constants.
    pub fn dispatch(
        &mut self,
        kernel: &Kernel,
        buffers: &[&Buffer],
        push: &[u8],
        groups: [u32; 3],
    ) -> Result<(), VulkanError> {
        let k = &kernel.inner;
        if buffers.len() != k.bindings as usize || push.len() != k.push_bytes as usize {
            return Err(VulkanError::Usage(format!(
                "kernel {}: {} buffers and {} push-constant bytes given, it takes {} and {}",
                k.name,
                buffers.len(),
                push.len(),
                k.bindings,
                k.push_bytes
            )));
        }
        if !Arc::ptr_eq(&k.gpu.inner, &self.gpu.inner) || buffers.iter().any(|b| !b.same_device(&self.gpu)) {
            return Err(VulkanError::Usage(format!("kernel {}: a kernel or buffer of another device", k.name)));
        }
        let most = self.gpu.inner.info.max_workgroup_count;
        if groups.iter().zip(most).any(|(g, m)| *g == 0 || *g > m) {
            return Err(VulkanError::Usage(format!(
                "kernel {}: {groups:?} workgroups; the device takes 1 to {most:?}",
                k.name
            )));
        }
        let set = self.descriptor_set(kernel)?;
        let infos: Vec<[vk::DescriptorBufferInfo; 1]> = buffers
            .iter()
            .map(|b| [vk::DescriptorBufferInfo { buffer: b.inner.raw, offset: 0, range: vk::WHOLE_SIZE }])
            .collect();
        let writes: Vec<vk::WriteDescriptorSet> = infos
            .iter()
            .enumerate()
            .map(|(i, info)| {
                vk::WriteDescriptorSet::default()
                    .dst_set(set)
                    .dst_binding(i as u32)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .buffer_info(info)
            })
            .collect();
        let raw = &self.gpu.inner.raw;
        // SAFETY: the set is fresh and unused by any submitted work; the buffers, kernel and set are kept
        // alive by the batch until its work is done.
        unsafe {
            raw.update_descriptor_sets(&writes, &[]);
            self.barrier_before();
            raw.cmd_bind_pipeline(self.cmd, vk::PipelineBindPoint::COMPUTE, k.pipeline);
            raw.cmd_bind_descriptor_sets(self.cmd, vk::PipelineBindPoint::COMPUTE, k.layout, 0, &[set], &[]);
            if !push.is_empty() {
                raw.cmd_push_constants(self.cmd, k.layout, vk::ShaderStageFlags::COMPUTE, 0, push);
            }
            raw.cmd_dispatch(self.cmd, groups[0], groups[1], groups[2]);
        }
        self.kernels.push(kernel.clone());
        self.buffers.extend(buffers.iter().map(|b| (*b).clone()));
        self.commands += 1;
        Ok(())
    }

    /// Record a copy of `bytes` from `src` at `src_offset` to `dst` at `dst_offset`.
    pub fn copy(
        &mut self,
        src: &Buffer,
        src_offset: u64,
        dst: &Buffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<(), VulkanError> {
        src.check_range(src_offset, bytes, "copy")?;
        dst.check_range(dst_offset, bytes, "copy")?;
        let region = [vk::BufferCopy { src_offset, dst_offset, size: bytes }];
        // SAFETY: both ranges are inside their buffers; the batch keeps both alive.
        unsafe {
            self.barrier_before();
            self.gpu.inner.raw.cmd_copy_buffer(self.cmd, src.inner.raw, dst.inner.raw, &region);
        }
        self.buffers.push(src.clone());
        self.buffers.push(dst.clone());
        self.commands += 1;
        Ok(())
    }

    /// Make every earlier command's writes visible to the next one (no-op before the first).
    ///
    /// # Safety
    /// The command buffer is recording.
    unsafe fn barrier_before(&self) {
        if self.commands == 0 {
            return;
        }
        let barrier = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::SHADER_WRITE | vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(
                vk::AccessFlags::SHADER_READ | vk::AccessFlags::SHADER_WRITE | vk::AccessFlags::TRANSFER_READ,
            )];
        let stages = vk::PipelineStageFlags::COMPUTE_SHADER | vk::PipelineStageFlags::TRANSFER;
        // SAFETY: the caller's contract.
        unsafe {
            self.gpu.inner.raw.cmd_pipeline_barrier(
                self.cmd,
                stages,
                stages,
                vk::DependencyFlags::empty(),
                &barrier,
                &[],
                &[],
            )
        };
    }

    /// Submit the batch and wait for it (at most the device's timeout). `what` names the work in errors.
    pub fn run(mut self, what: &str) -> Result<(), VulkanError> {
        let gpu = self.gpu.clone();
        gpu.check_usable()?;
        let raw = &gpu.inner.raw;
        let name = gpu.name().to_string();
        // SAFETY: recording began in `new`; every recorded object is alive.
        unsafe { raw.end_command_buffer(self.cmd) }.map_err(|r| VulkanError::call("vkEndCommandBuffer", r, &name))?;
        // SAFETY: valid create info on a live device.
        let fence = unsafe { raw.create_fence(&vk::FenceCreateInfo::default(), None) }
            .map_err(|r| VulkanError::call("vkCreateFence", r, &name))?;
        let cmds = [self.cmd];
        let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
        let submitted = {
            let queue = gpu.inner.queue.lock().map_err(|_| VulkanError::Usage("the queue lock was poisoned".into()))?;
            // SAFETY: the queue is held exclusively; the command buffer is complete.
            unsafe { raw.queue_submit(*queue, &submit, fence) }
        };
        if let Err(r) = submitted {
            // SAFETY: nothing was submitted with the fence.
            unsafe { raw.destroy_fence(fence, None) };
            let e = VulkanError::call("vkQueueSubmit", r, &name);
            if matches!(e, VulkanError::DeviceLost { .. }) {
                gpu.fail(&e);
            }
            return Err(e);
        }
        self.in_flight = true;
        let timeout_ns = gpu.inner.timeout_ns.load(Ordering::SeqCst);
        // SAFETY: the fence belongs to this device.
        let waited = unsafe { raw.wait_for_fences(&[fence], true, timeout_ns) };
        match waited {
            Ok(()) => {
                self.in_flight = false;
                // SAFETY: the fence is signalled and no longer used.
                unsafe { raw.destroy_fence(fence, None) };
                Ok(())
            }
            Err(r) => {
                // The device may still be running this work (timeout) or be gone (lost): nothing it might
                // use is freed, and the device is not used again.
                let e = if r == vk::Result::TIMEOUT {
                    VulkanError::Timeout { device: name, what: what.to_string(), seconds: timeout_ns / 1_000_000_000 }
                } else {
                    VulkanError::call("vkWaitForFences", r, &name)
                };
                gpu.fail(&e);
                Err(e)
            }
        }
    }
}
