// swift-tools-version:5.9
// SailEdge for iOS: a Swift wrapper over the sail-edge C API. SailEdgeFFI.xcframework (libsail_edge.a for
// device and simulator, with sail_edge.h and its module map) is made on a Mac by scripts/build-xcframework.sh;
// it is not checked in.
import PackageDescription

let package = Package(
    name: "SailEdge",
    platforms: [.iOS(.v15)],
    products: [
        .library(name: "SailEdge", targets: ["SailEdge"]),
    ],
    targets: [
        // Named apart from the Swift module: the C module inside is `SailEdgeFFI`, the Swift API `SailEdge`.
        .binaryTarget(name: "SailEdgeFFI", path: "SailEdgeFFI.xcframework"),
        .target(
            name: "SailEdge",
            dependencies: ["SailEdgeFFI"],
            // The runtime draws random seeds through getrandom 0.2, which calls SecRandomCopyBytes on iOS.
            linkerSettings: [.linkedFramework("Security")]
        ),
    ]
)
