//! Vulkan compute devices (cargo feature `vulkan`).
//!
//! The loader (`libvulkan.so.1`; `SAIL_EDGE_VULKAN_LOADER` names another file) is opened at run time, so a
//! binary built with the feature runs where there is no Vulkan at all: [`Vulkan::load`] then returns
//! [`VulkanError::NoLoader`] and the caller stays on the CPU. [`Vulkan::devices`] describes every device with
//! the limits and features the shaders care about (`sail-edge doctor` prints them); [`Gpu`] is one opened
//! device with buffers, compute kernels from the SPIR-V in [`shaders`] and batches of dispatches recorded
//! into one command buffer (no host round trip between operations).
//!
//! `unsafe` in this module is the Vulkan C boundary only: each call's valid-usage rules are kept by the
//! types (a buffer or kernel holds its device alive; a batch holds the buffers it uses until its work is
//! done; nothing is destroyed while the device may still be using it).

mod device;
pub mod linear;
pub mod shaders;
#[cfg(test)]
pub(crate) mod test_support;

use std::ffi::CStr;
use std::sync::Arc;

use ash::vk;

pub use device::{Batch, Buffer, Gpu, Kernel, MemoryKind};

/// Everything that can go wrong talking to Vulkan, with the call or object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum VulkanError {
    #[error(
        "no Vulkan loader: {0} (install one: Debian's libvulkan1 with a driver such as mesa-vulkan-drivers; \
         SAIL_EDGE_VULKAN_LOADER names the library to open)"
    )]
    NoLoader(String),
    #[error("no Vulkan driver answered ({call}: {result}); is a driver (ICD) installed?")]
    NoDriver { call: &'static str, result: vk::Result },
    #[error("{call} failed: {result}")]
    Call { call: &'static str, result: vk::Result },
    #[error("no Vulkan device {index}: this machine has {count}")]
    NoDevice { index: usize, count: usize },
    #[error("Vulkan device {device} has no compute queue")]
    NoComputeQueue { device: String },
    #[error("Vulkan device {device} has no memory type for {what}")]
    NoMemoryType { device: String, what: String },
    #[error("out of {kind} memory on Vulkan device {device}: {what}")]
    OutOfMemory { device: String, kind: &'static str, what: String },
    #[error("Vulkan device {device} was lost during {call}; it cannot be used again in this process")]
    DeviceLost { device: String, call: &'static str },
    #[error("Vulkan device {device} did not finish {what} within {seconds} s; it is not used again")]
    Timeout { device: String, what: String, seconds: u64 },
    #[error("Vulkan device {device} failed earlier ({why}) and is not used again")]
    Unusable { device: String, why: String },
    #[error("{0}")]
    Usage(String),
}

impl VulkanError {
    /// A failed call's result as an error naming the call (out-of-memory and device-lost results get their
    /// own variants, since callers fall back to the CPU on those).
    fn call(call: &'static str, result: vk::Result, device: &str) -> VulkanError {
        match result {
            vk::Result::ERROR_DEVICE_LOST => VulkanError::DeviceLost { device: device.to_string(), call },
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY | vk::Result::ERROR_OUT_OF_HOST_MEMORY => VulkanError::OutOfMemory {
                device: device.to_string(),
                kind: if result == vk::Result::ERROR_OUT_OF_DEVICE_MEMORY { "device" } else { "host" },
                what: format!("in {call}"),
            },
            result => VulkanError::Call { call, result },
        }
    }
}

/// `v` as the shaders' u32 (their sizes and indices), or an error naming `what`.
pub fn u32_of(v: usize, what: &str) -> Result<u32, VulkanError> {
    u32::try_from(v).map_err(|_| VulkanError::Usage(format!("{what} {v} does not fit the shaders' u32")))
}

/// The kind of device, as Vulkan reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    Discrete,
    Integrated,
    Virtual,
    /// A CPU implementation (Mesa's lavapipe, SwiftShader): correct, never fast.
    Cpu,
    Other,
}

impl DeviceKind {
    /// How people say it: `discrete GPU`, `CPU implementation`…
    pub fn label(self) -> &'static str {
        match self {
            DeviceKind::Discrete => "discrete GPU",
            DeviceKind::Integrated => "integrated GPU",
            DeviceKind::Virtual => "virtual GPU",
            DeviceKind::Cpu => "CPU implementation",
            DeviceKind::Other => "other device",
        }
    }
}

/// One Vulkan device: what it is and the limits and features the compute shaders depend on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceInfo {
    /// Its position in the loader's list (`Gpu::open`'s index).
    pub index: usize,
    pub name: String,
    pub kind: DeviceKind,
    pub vendor_id: u32,
    pub device_id: u32,
    /// The Vulkan version the device supports, `major.minor.patch`.
    pub api_version: String,
    /// The driver's name and version string (Vulkan 1.2 devices; empty before).
    pub driver: String,
    /// Bytes in device-local memory heaps.
    pub device_local_bytes: u64,
    /// Whether a memory type is both device-local and host-visible (unified memory, as on Jetson, or a
    /// resizable BAR): weights can be written in place, without a staging copy.
    pub unified_memory: bool,
    pub max_shared_memory_bytes: u32,
    pub max_workgroup_invocations: u32,
    pub max_workgroup_size: [u32; 3],
    pub max_workgroup_count: [u32; 3],
    pub max_storage_buffer_range: u32,
    /// The default subgroup (warp, wave) size.
    pub subgroup_size: u32,
    /// Subgroup arithmetic (`subgroupAdd`) in compute shaders.
    pub subgroup_arithmetic: bool,
    /// `shaderInt8`, 8-bit storage buffers, `shaderFloat16`, 16-bit storage buffers.
    pub shader_int8: bool,
    pub storage_8bit: bool,
    pub shader_float16: bool,
    pub storage_16bit: bool,
    /// `shaderIntegerDotProduct` (Vulkan 1.3 or VK_KHR_shader_integer_dot_product).
    pub integer_dot_product: bool,
}

/// The opened loader and one instance.
pub struct Vulkan {
    instance: Arc<Instance>,
}

/// The entry points and the instance, destroyed when the last device using them is gone.
pub(crate) struct Instance {
    /// Kept loaded for as long as the instance lives.
    _entry: ash::Entry,
    pub(crate) raw: ash::Instance,
    /// The API version the instance was created with.
    pub(crate) api_version: u32,
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: every object created from this instance holds an Arc to it, so none is left.
        unsafe { self.raw.destroy_instance(None) };
    }
}

/// The highest Vulkan version the shaders and queries here use.
const WANTED_API: u32 = vk::API_VERSION_1_3;

impl Vulkan {
    /// Open the loader (`SAIL_EDGE_VULKAN_LOADER`, else the system's) and create an instance.
    pub fn load() -> Result<Vulkan, VulkanError> {
        // SAFETY: opening the loader runs its initialisers; the Vulkan loader is meant to be opened so.
        let entry = match std::env::var_os("SAIL_EDGE_VULKAN_LOADER") {
            Some(path) => unsafe { ash::Entry::load_from(&path) }
                .map_err(|e| VulkanError::NoLoader(format!("{}: {e}", std::path::Path::new(&path).display())))?,
            None => unsafe { ash::Entry::load() }.map_err(|e| VulkanError::NoLoader(e.to_string()))?,
        };
        // SAFETY: plain queries on a loaded entry.
        let loader_version = unsafe { entry.try_enumerate_instance_version() }
            .map_err(|result| VulkanError::NoDriver { call: "vkEnumerateInstanceVersion", result })?
            .unwrap_or(vk::API_VERSION_1_0);
        let api_version = loader_version.min(WANTED_API);
        if api_version < vk::API_VERSION_1_1 {
            return Err(VulkanError::Usage(format!(
                "the Vulkan loader supports only version {}; the shaders need 1.1",
                version_string(loader_version)
            )));
        }
        // SAFETY: as above.
        let extensions = unsafe { entry.enumerate_instance_extension_properties(None) }
            .map_err(|result| VulkanError::NoDriver { call: "vkEnumerateInstanceExtensionProperties", result })?;
        let has = |name: &CStr| extensions.iter().any(|e| e.extension_name_as_c_str() == Ok(name));
        // MoltenVK (macOS, iOS) lists its devices only to instances that accept portability drivers.
        let portability = has(ash::khr::portability_enumeration::NAME);
        let enabled: Vec<*const std::ffi::c_char> =
            if portability { vec![ash::khr::portability_enumeration::NAME.as_ptr()] } else { Vec::new() };
        let app = vk::ApplicationInfo::default()
            .application_name(c"sail-edge")
            .engine_name(c"sail-edge")
            .api_version(api_version);
        let flags = if portability {
            vk::InstanceCreateFlags::ENUMERATE_PORTABILITY_KHR
        } else {
            vk::InstanceCreateFlags::empty()
        };
        let info =
            vk::InstanceCreateInfo::default().application_info(&app).enabled_extension_names(&enabled).flags(flags);
        // SAFETY: `info` and what it points to outlive the call.
        let raw = unsafe { entry.create_instance(&info, None) }
            .map_err(|result| VulkanError::NoDriver { call: "vkCreateInstance", result })?;
        Ok(Vulkan { instance: Arc::new(Instance { _entry: entry, raw, api_version }) })
    }

    /// The physical devices, in the loader's order.
    pub(crate) fn physical_devices(&self) -> Result<Vec<vk::PhysicalDevice>, VulkanError> {
        // SAFETY: the instance is alive.
        unsafe { self.instance.raw.enumerate_physical_devices() }
            .map_err(|result| VulkanError::NoDriver { call: "vkEnumeratePhysicalDevices", result })
    }

    /// Every device, described.
    pub fn devices(&self) -> Result<Vec<DeviceInfo>, VulkanError> {
        Ok(self.physical_devices()?.into_iter().enumerate().map(|(i, pd)| describe(&self.instance, pd, i)).collect())
    }

    /// The instance, for [`Gpu::open`].
    pub(crate) fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }
}

fn version_string(v: u32) -> String {
    format!("{}.{}.{}", vk::api_version_major(v), vk::api_version_minor(v), vk::api_version_patch(v))
}

/// What [`DeviceInfo`] says about `pd`.
pub(crate) fn describe(instance: &Instance, pd: vk::PhysicalDevice, index: usize) -> DeviceInfo {
    let raw = &instance.raw;
    // SAFETY: `pd` came from this instance; the structures chained below are core in the versions checked.
    let props = unsafe { raw.get_physical_device_properties(pd) };
    let device_api = props.api_version.min(instance.api_version);
    let mut subgroup = vk::PhysicalDeviceSubgroupProperties::default();
    let mut driver = vk::PhysicalDeviceDriverProperties::default();
    {
        let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut subgroup);
        if device_api >= vk::API_VERSION_1_2 {
            props2 = props2.push_next(&mut driver);
        }
        // SAFETY: as above.
        unsafe { raw.get_physical_device_properties2(pd, &mut props2) };
    }
    let mut storage16 = vk::PhysicalDevice16BitStorageFeatures::default();
    let mut f16i8 = vk::PhysicalDeviceShaderFloat16Int8Features::default();
    let mut storage8 = vk::PhysicalDevice8BitStorageFeatures::default();
    let mut int_dot = vk::PhysicalDeviceShaderIntegerDotProductFeatures::default();
    {
        let mut features = vk::PhysicalDeviceFeatures2::default().push_next(&mut storage16);
        if device_api >= vk::API_VERSION_1_2 {
            features = features.push_next(&mut f16i8).push_next(&mut storage8);
        }
        if device_api >= vk::API_VERSION_1_3 {
            features = features.push_next(&mut int_dot);
        }
        // SAFETY: as above.
        unsafe { raw.get_physical_device_features2(pd, &mut features) };
    }
    // SAFETY: as above.
    let memory = unsafe { raw.get_physical_device_memory_properties(pd) };
    let heaps = memory.memory_heaps_as_slice();
    let device_local_bytes =
        heaps.iter().filter(|h| h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL)).map(|h| h.size).sum();
    let unified_memory = memory.memory_types_as_slice().iter().any(|t| {
        t.property_flags.contains(vk::MemoryPropertyFlags::DEVICE_LOCAL | vk::MemoryPropertyFlags::HOST_VISIBLE)
    });
    let text = |s: Result<&CStr, std::ffi::FromBytesUntilNulError>| {
        s.map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
    };
    let driver_text = if device_api >= vk::API_VERSION_1_2 {
        let (name, info) = (text(driver.driver_name_as_c_str()), text(driver.driver_info_as_c_str()));
        if info.is_empty() {
            name
        } else {
            format!("{name} {info}")
        }
    } else {
        String::new()
    };
    let limits = &props.limits;
    DeviceInfo {
        index,
        name: text(props.device_name_as_c_str()),
        kind: match props.device_type {
            vk::PhysicalDeviceType::DISCRETE_GPU => DeviceKind::Discrete,
            vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceKind::Integrated,
            vk::PhysicalDeviceType::VIRTUAL_GPU => DeviceKind::Virtual,
            vk::PhysicalDeviceType::CPU => DeviceKind::Cpu,
            _ => DeviceKind::Other,
        },
        vendor_id: props.vendor_id,
        device_id: props.device_id,
        api_version: version_string(props.api_version),
        driver: driver_text,
        device_local_bytes,
        unified_memory,
        max_shared_memory_bytes: limits.max_compute_shared_memory_size,
        max_workgroup_invocations: limits.max_compute_work_group_invocations,
        max_workgroup_size: limits.max_compute_work_group_size,
        max_workgroup_count: limits.max_compute_work_group_count,
        max_storage_buffer_range: limits.max_storage_buffer_range,
        subgroup_size: subgroup.subgroup_size,
        subgroup_arithmetic: subgroup.supported_stages.contains(vk::ShaderStageFlags::COMPUTE)
            && subgroup.supported_operations.contains(vk::SubgroupFeatureFlags::ARITHMETIC),
        shader_int8: f16i8.shader_int8 == vk::TRUE,
        storage_8bit: storage8.storage_buffer8_bit_access == vk::TRUE,
        shader_float16: f16i8.shader_float16 == vk::TRUE,
        storage_16bit: storage16.storage_buffer16_bit_access == vk::TRUE,
        integer_dot_product: int_dot.shader_integer_dot_product == vk::TRUE,
    }
}
