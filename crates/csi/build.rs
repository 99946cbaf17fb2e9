// The CSI and plugin-registration services, generated from their .proto
// files by protoc (Debian's protobuf-compiler, as etcd-client needs too).
fn main() {
    tonic_prost_build::configure()
        .generate_default_stubs(true)
        .compile_protos(&["proto/csi.proto", "proto/pluginregistration.proto"], &["proto"])
        .expect("compiling the CSI protos");
}
