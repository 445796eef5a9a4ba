#include "berth/config/config_keys.h"

namespace berth::config {
namespace {

constexpr KeyDoc kKeyDocs[] = {
    {.path = "root",
     .value = "absolute path",
     .default_value = "\"/var/lib/berth\"",
     .example = "\"/var/lib/berth\"",
     .containerd = "",
     .description =
         "Where the content store, the snapshots and the metadata database live. In a containerd "
         "config.toml the top-level root is containerd's own and is ignored."},
    {.path = "state",
     .value = "absolute path",
     .default_value = "\"/run/berth\"",
     .example = "\"/run/berth\"",
     .containerd = "",
     .description =
         "Volatile state: sockets and locks. Ignored in a containerd config.toml, as root is."},
    {.path = "address",
     .value = "unix:///ABSOLUTE/PATH",
     .default_value = "\"unix:///run/berth/berth.sock\"",
     .example = "\"unix:///run/berth/berth.sock\"",
     .containerd = "grpc.address",
     .description =
         "The CRI endpoint berthd serves (ImageService runtime.v1 and v1alpha2, and berth's Admin "
         "service). The socket is made with mode 0660 and its parent directories are created."},
    {.path = "snapshotter_address",
     .value = "unix:///ABSOLUTE/PATH or \"\"",
     .default_value = "snapshotter.sock beside the address's socket",
     .example = "\"unix:///run/berth/snapshotter.sock\"",
     .containerd = "proxy_plugins.<name>.address",
     .description =
         "Where berthd serves containerd's Snapshots API, for containerd's [proxy_plugins] entry "
         "(berth as containerd's snapshotter and remote layer fetcher). \"\" serves none."},
    {.path = "upstream_image_endpoint",
     .value = "unix:///ABSOLUTE/PATH or \"\"",
     .default_value = "\"\"",
     .example = "\"unix:///run/containerd/containerd.sock\"",
     .containerd = "",
     .description = "Front mode: the CRI ImageService of the node's runtime (e.g. "
                    "\"unix:///run/containerd/containerd.sock\"). Every image call berthd receives "
                    "is forwarded there and the runtime's image store stays the truth. \"\" is "
                    "standalone mode: berth's own image store answers."},
    {.path = "metrics_address",
     .value = "host:port or \"\"",
     .default_value = "\"\"",
     .example = "\"127.0.0.1:1338\"",
     .containerd = "metrics.address",
     .description =
         "Where berthd serves Prometheus metrics over HTTP, at /v1/metrics (text exposition "
         "0.0.4; every metric is listed in docs/metrics.md). \"[::1]:1338\" for an IPv6 host. "
         "No authentication or TLS: keep it on loopback or a node-local address. \"\" serves "
         "none."},
    {.path = "log_level",
     .value = "trace | debug | info | warn | error | off",
     .default_value = "\"info\"",
     .example = "\"debug\"",
     .containerd = "debug.level",
     .description = "The least severe log level berthd writes (to stderr, one line per event)."},

    {.path = "pull.max_concurrent_downloads",
     .value = "integer 1..1024",
     .default_value = "3",
     .example = "3",
     .containerd = "max_concurrent_downloads in the CRI plugin",
     .description = "Layers fetched at once by one pull."},
    {.path = "pull.snapshotter",
     .value = "overlayfs | native | erofs",
     .default_value = "\"overlayfs\"",
     .example = "\"native\"",
     .containerd = "containerd.snapshotter in the CRI plugin",
     .description = "Where layers are unpacked: overlayfs layers (a directory per layer, stacked "
                    "by overlayfs), native (a full copy of the tree per snapshot) or erofs (one "
                    "EROFS image file per layer, written while it downloads, mounted read-only "
                    "and stacked by overlayfs; needs root and a kernel with erofs)."},
    {.path = "pull.image_pull_progress_timeout",
     .value = "Go duration (\"5m\", \"30s\"), \"0\" off",
     .default_value = "\"5m\"",
     .example = "\"5m\"",
     .containerd = "image_pull_progress_timeout in the CRI plugin",
     .description = "A registry request that receives no byte for this long gives up on that "
                    "endpoint: the next mirror or the registry itself is tried, and the pull fails "
                    "with UNAVAILABLE when none is left."},
    {.path = "pull.min_download_speed",
     .value = "\"100KiB/s\", \"1MB/s\" or bytes per second; \"0\" off",
     .default_value = "\"0\"",
     .example = "\"100KiB/s\"",
     .containerd = "",
     .description =
         "A throughput floor for slow-drip links: a request receiving less than this per second "
         "over min_download_speed_window gives up on that endpoint, as a stall does."},
    {.path = "pull.min_download_speed_window",
     .value = "duration 1s..1h",
     .default_value = "\"30s\"",
     .example = "\"30s\"",
     .containerd = "",
     .description = "The window over which min_download_speed is measured."},
    {.path = "pull.max_concurrent_downloads_total",
     .value = "integer 0..1024, 0 no limit",
     .default_value = "16",
     .example = "16",
     .containerd = "",
     .description = "Blob downloads at once across all pulls of the node."},
    {.path = "pull.max_concurrent_downloads_per_registry",
     .value = "integer 0..1024, 0 no limit",
     .default_value = "8",
     .example = "8",
     .containerd = "",
     .description =
         "Blob downloads at once to one registry host (as named in the image reference)."},
    {.path = "pull.sync",
     .value = "none | layer | file",
     .default_value = "\"layer\"",
     .example = "\"file\"",
     .containerd = "",
     .description = "How durable a pull's writes are before each step counts as done: layer syncs "
                    "each blob and layer before it is recorded, file also syncs every unpacked "
                    "file, none syncs nothing (a power loss may then report incomplete layers)."},
    {.path = "pull.layer_threads",
     .value = "\"1\" | \"2\" | \"3\" | \"auto\"",
     .default_value = "\"auto\"",
     .example = "\"2\"",
     .containerd = "",
     .description =
         "Threads per layer being unpacked: 1 decompresses and untars together, 2 untars on a "
         "thread of its own, 3 also decompresses on one, auto uses 3 for a layer unpacking alone "
         "and 2 while the cores are not all busy unpacking."},
    {.path = "pull.max_layer_size",
     .value = "integer bytes or a size (\"10GiB\")",
     .default_value = "\"64GiB\"",
     .example = "\"10GiB\"",
     .containerd = "",
     .description = "Layers bigger than this are refused."},
    {.path = "pull.min_free_space",
     .value = "a size (\"2GiB\"), a percentage (\"5%\") or \"0\"",
     .default_value = "the larger of 5% and 1GiB",
     .example = "\"5%\"",
     .containerd = "",
     .description = "Free space a pull leaves on the filesystems of the content store and the "
                    "snapshots, checked when the pull is admitted and while layers are written. "
                    "\"0\" asks for no reserve."},
    {.path = "pull.max_inflate_ratio",
     .value = "0, or a number 2..1000000",
     .default_value = "0",
     .example = "100",
     .containerd = "",
     .description =
         "Refuse a layer that inflates to more than this many times its compressed size (a "
         "decompression bomb); layers under 1MiB inflated never are. 0 turns the check off."},
    {.path = "pull.discard_unpacked_layers",
     .value = "boolean",
     .default_value = "false",
     .example = "true",
     .containerd = "containerd.discard_unpacked_layers in the CRI plugin",
     .description = "Drop the compressed layer blobs once they are unpacked."},
    {.path = "pull.resume_window",
     .value = "duration 0..720h",
     .default_value = "\"1h\"",
     .example = "\"2h\"",
     .containerd = "",
     .description = "How long what a failed or interrupted pull fetched is kept for a retry to "
                    "reuse; \"0\" frees it at the next garbage collection."},
    {.path = "pull.pinned_images",
     .value = "array of image references",
     .default_value = "[]",
     .example = "[\"registry.k8s.io/pause:3.9\"]",
     .containerd = "pinned images (CRI labels)",
     .description =
         "Images garbage collection never removes, e.g. [\"registry.k8s.io/pause:3.9\"]."},

    {.path = "registry.config_path",
     .value = "directory, or several separated by ':'",
     .default_value = "\"\"",
     .example = "\"/etc/berth/certs.d\"",
     .containerd = "registry.config_path in the CRI plugin",
     .description = "A directory of hosts.toml files in containerd's certs.d layout "
                    "(<dir>/<host>/hosts.toml): mirrors, TLS and headers per host. Cannot be "
                    "combined with mirrors or with any configs.<host>.tls."},
    {.path = "registry.mirrors.<host>.endpoint",
     .value = "array of http:// or https:// URLs",
     .default_value = "[]",
     .example = "[\"https://mirror.local\"]",
     .containerd = "registry.mirrors.<host>.endpoint in the CRI plugin",
     .description =
         "Mirrors tried in order before <host> itself; <host> \"*\" applies to every host."},
    {.path = "registry.configs.<host>.auth.username",
     .value = "string",
     .default_value = "\"\"",
     .example = "\"ci\"",
     .containerd = "registry.configs.<host>.auth.username in the CRI plugin",
     .description = "The user name for <host>."},
    {.path = "registry.configs.<host>.auth.password",
     .value = "string",
     .default_value = "\"\"",
     .example = "\"secret\"",
     .containerd = "registry.configs.<host>.auth.password in the CRI plugin",
     .description = "The password for <host>. Never logged or printed."},
    {.path = "registry.configs.<host>.auth.auth",
     .value = "base64 of \"user:password\"",
     .default_value = "\"\"",
     .example = "\"Y2k6c2VjcmV0\"",
     .containerd = "registry.configs.<host>.auth.auth in the CRI plugin",
     .description = "Docker's config.json form of the credentials. Never logged or printed."},
    {.path = "registry.configs.<host>.auth.identitytoken",
     .value = "string",
     .default_value = "\"\"",
     .example = "\"token\"",
     .containerd = "registry.configs.<host>.auth.identitytoken in the CRI plugin",
     .description = "A refresh token for <host>'s token service. Never logged or printed."},
    {.path = "registry.configs.<host>.tls.ca_file",
     .value = "path to PEM",
     .default_value = "\"\"",
     .example = "\"/etc/berth/ca.pem\"",
     .containerd = "registry.configs.<host>.tls.ca_file in the CRI plugin",
     .description = "Certificate authorities trusted for <host>, in addition to the system's."},
    {.path = "registry.configs.<host>.tls.cert_file",
     .value = "path to PEM",
     .default_value = "\"\"",
     .example = "\"/etc/berth/client.pem\"",
     .containerd = "registry.configs.<host>.tls.cert_file in the CRI plugin",
     .description = "A client certificate for <host>; needs key_file."},
    {.path = "registry.configs.<host>.tls.key_file",
     .value = "path to PEM",
     .default_value = "\"\"",
     .example = "\"/etc/berth/client-key.pem\"",
     .containerd = "registry.configs.<host>.tls.key_file in the CRI plugin",
     .description = "The client certificate's private key; needs cert_file."},
    {.path = "registry.configs.<host>.tls.insecure_skip_verify",
     .value = "boolean",
     .default_value = "false",
     .example = "true",
     .containerd = "registry.configs.<host>.tls.insecure_skip_verify in the CRI plugin",
     .description = "Do not verify <host>'s certificate (for test registries only)."},
    {.path = "registry.configs.<host>.fallback",
     .value = "always | never",
     .default_value = "\"always\"",
     .example = "\"never\"",
     .containerd = "",
     .description =
         "After every mirror of <host> has failed, try <host> itself (always, as containerd does) "
         "or fail the pull (never: the mirrors are the only allowed source)."},
    {.path = "registry.headers.<name>",
     .value = "array of strings",
     .default_value = "{}",
     .example = "[\"value\"]",
     .containerd = "registry.headers in the CRI plugin",
     .description = "Headers sent with every registry request. The values may carry credentials "
                    "and are never logged."},

    {.path = "peers.listen",
     .value = "host:port or \"\"",
     .default_value = "\"\"",
     .example = "\"0.0.0.0:5050\"",
     .containerd = "",
     .description =
         "Where berthd serves its verified content to the other berth nodes, as a read-only OCI "
         "distribution endpoint: blobs and manifests by digest only (no tags, catalog or "
         "uploads), with Range. \"[::]:5050\" for IPv6. \"\" serves none."},
    {.path = "peers.max_concurrent_uploads",
     .value = "integer 1..1024",
     .default_value = "8",
     .example = "8",
     .containerd = "",
     .description = "Blobs and manifests sent to peers at once; a request past the limit is "
                    "answered 429 TOOMANYREQUESTS with Retry-After, so the peer asks another "
                    "node or the registry."},
    {.path = "peers.max_upload_rate",
     .value = "\"100MiB/s\", \"1GB/s\" or bytes per second; \"0\" no limit",
     .default_value = "\"0\"",
     .example = "\"100MiB/s\"",
     .containerd = "",
     .description = "Bytes per second sent to peers, all connections together, so that serving "
                    "never starves the node's own pulls."},
    {.path = "peers.tls_cert",
     .value = "path to PEM",
     .default_value = "\"\"",
     .example = "\"/etc/berth/peers/server.pem\"",
     .containerd = "",
     .description = "The peer endpoint's certificate chain: with tls_key, the endpoint speaks "
                    "TLS only; without, plain HTTP."},
    {.path = "peers.tls_key",
     .value = "path to PEM",
     .default_value = "\"\"",
     .example = "\"/etc/berth/peers/server-key.pem\"",
     .containerd = "",
     .description = "The private key of tls_cert; needs tls_cert."},
    {.path = "peers.tls_client_ca",
     .value = "path to PEM",
     .default_value = "\"\"",
     .example = "\"/etc/berth/peers/cluster-ca.pem\"",
     .containerd = "",
     .description = "A cluster CA: clients must present a certificate it signed (mutual TLS), "
                    "and a connection without one is refused in the handshake. Needs tls_cert "
                    "and tls_key."},
    {.path = "peers.fetch_missing",
     .value = "boolean",
     .default_value = "true",
     .example = "true",
     .containerd = "",
     .description = "Whether a blob a peer asks for that this node lacks is fetched from the "
                    "registry the request names (ns=), once however many peers ask, and sent "
                    "to them as it arrives, then kept. false answers 404 and the peer goes on "
                    "to its next home or the registry."},
    // [peers], the pulling side: who the peers are and how a pull asks them.
    {.path = "peers.static",
     .value = "array of \"host:port\" (\"[v6]:port\")",
     .default_value = "[]",
     .example = "[\"10.0.0.2:5050\", \"10.0.0.3:5050\"]",
     .containerd = "",
     .description = "Peers for fleets without Kubernetes: the other berth nodes' peer endpoints. "
                    "A pull asks a blob's home peers among them before the registry."},
    {.path = "peers.dns_name",
     .value = "DNS name or \"\"",
     .default_value = "\"\"",
     .example = "\"berth-peers.kube-system.svc.cluster.local\"",
     .containerd = "",
     .description = "A name whose A and AAAA records are the peers (a headless Service), "
                    "resolved at start and every refresh_interval; needs port. A failed "
                    "resolution keeps the peers found last."},
    {.path = "peers.port",
     .value = "integer 1..65535",
     .default_value = "none",
     .example = "5050",
     .containerd = "",
     .description = "The port of the peers found through dns_name."},
    {.path = "peers.self",
     .value = "\"host:port\" or \"\"",
     .default_value = "\"\"",
     .example = "\"10.0.0.7:5050\"",
     .containerd = "",
     .description = "This node's own peer address as the others see it, left out of the peers "
                    "so a node never asks itself."},
    {.path = "peers.home_peers",
     .value = "integer 0..16",
     .default_value = "2",
     .example = "2",
     .containerd = "",
     .description = "How many of a blob's home peers (rendezvous hashing over the peers) a pull "
                    "asks, in order, before the registry. Manifests always come from the "
                    "registry. 0 asks no peer."},
    {.path = "peers.tls_ca",
     .value = "path to PEM or \"\"",
     .default_value = "\"\"",
     .example = "\"/etc/berth/peers/cluster-ca.pem\"",
     .containerd = "",
     .description = "A CA to verify the peers' certificates with: peers are asked over https. "
                    "\"\" asks them over plain http (every byte is verified against its digest "
                    "either way)."},
    {.path = "peers.refresh_interval",
     .value = "duration 1s..1h",
     .default_value = "\"30s\"",
     .example = "\"30s\"",
     .containerd = "",
     .description = "How often dns_name is resolved again."},
};

}  // namespace

std::span<const KeyDoc> KeyDocs() { return kKeyDocs; }

}  // namespace berth::config
