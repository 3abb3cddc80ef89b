#!/usr/bin/env bash
# Builds the Debian package into target/debian/chat-notifier_<version>-1_<arch>.deb, with
# cargo-deb from Cargo.toml's [package.metadata.deb] (issue 28). Installs cargo-deb (crates.io)
# when missing, builds the release binary (incremental: a built target/release is reused), and
# generates the man page and the bash, zsh and fish completions from the command-line
# definition of that binary into target/deb-assets/. Prints the package's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb: installing cargo-deb" >&2
  cargo install cargo-deb --locked --version '^3.8' --quiet
fi

cargo build --release --locked --quiet
bin=target/release/chat-notifier
assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets"
"$bin" man >"$assets/chat-notifier.1"
"$bin" completions bash >"$assets/chat-notifier.bash"
"$bin" completions zsh >"$assets/_chat-notifier"
"$bin" completions fish >"$assets/chat-notifier.fish"

# The Debian changelog's latest entry is this version's: a version bump needs its entry.
version=$(cargo metadata --no-deps --format-version 1 --locked | sed -E 's/.*"name":"chat-notifier","version":"([^"]+)".*/\1/')
head -n 1 packaging/deb/changelog | grep -qF "chat-notifier ($version-1) " ||
  { echo "build-deb: packaging/deb/changelog has no entry for $version-1 on its first line" >&2; exit 1; }

# --no-build: the binary above is the one packaged. --strip: the release profile keeps line
# tables for backtraces, which cargo-deb would otherwise ship (70 MB instead of 10).
# cargo-deb prints the package's path on stdout.
cargo deb --no-build --locked --strip --quiet
