// The sail-edge Android library module (an AAR): the Kotlin wrapper, SailNative.java and the JNI shim built by
// CMake. Include it from the app's settings.gradle.kts:
//     include(":sail-edge-android")
//     project(":sail-edge-android").projectDir = file("<sail-edge checkout>/examples/android/sail-edge-android")
// and depend on it: implementation(project(":sail-edge-android")).
//
// The Rust library comes first (README.md): `./gradlew assembleRelease -PsailEdgeCargoNdk` runs cargo ndk
// itself (shared link); -PsailEdgeStatic links the staticlib that plain `cargo build --target` makes.
plugins {
    id("com.android.library") version "8.5.2"
    id("org.jetbrains.kotlin.android") version "1.9.24"
}

val sailEdgeStatic = providers.gradleProperty("sailEdgeStatic").isPresent

android {
    namespace = "dev.sailedge"
    compileSdk = 34
    ndkVersion = "26.3.11579264"

    defaultConfig {
        minSdk = 24
        // The runtime's kernels are tuned for arm64 (NEON, dotprod, i8mm); add "x86_64" for the emulator.
        ndk { abiFilters += listOf("arm64-v8a") }
        externalNativeBuild {
            cmake { arguments += listOf("-DSAIL_EDGE_STATIC=${if (sailEdgeStatic) "ON" else "OFF"}") }
        }
        consumerProguardFiles("consumer-rules.pro")
    }

    externalNativeBuild {
        cmake {
            path = file("src/main/cpp/CMakeLists.txt")
            version = "3.22.1"
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}

dependencies {
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.8.1")
    implementation("androidx.camera:camera-core:1.3.4")
}

// Optional: build the Rust cdylib with cargo ndk before the native build (needs `cargo install cargo-ndk`,
// `rustup target add aarch64-linux-android` and the NDK above).
if (providers.gradleProperty("sailEdgeCargoNdk").isPresent) {
    val checkout = file("../../..")
    val cargoNdk = tasks.register<Exec>("cargoNdk") {
        workingDir = checkout
        commandLine(
            "cargo", "ndk", "-t", "arm64-v8a", "-o", file("src/main/jniLibs").absolutePath,
            "build", "--release", "-p", "sail-edge-ffi",
        )
    }
    tasks.named("preBuild") { dependsOn(cargoNdk) }
}
