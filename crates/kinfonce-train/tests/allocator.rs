//! `allocator::retain_freed_memory`: an activation-sized block stops being a fresh mapping.
//!
//! Its own test binary, because the setting is process-wide.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::hint::black_box;

/// Bytes glibc currently holds in blocks it mapped one by one with mmap.
fn mapped_block_bytes() -> usize {
    // SAFETY: mallinfo2 only reads allocator statistics.
    unsafe { libc::mallinfo2().hblkhd }
}

#[test]
fn activation_sized_blocks_come_from_the_heap() {
    // A bf16 activation of ResNet-18 width 64 on 256 CIFAR views: [256, 64, 32, 32].
    const ACTIVATION: usize = 256 * 64 * 32 * 32 * 2;

    let before = mapped_block_bytes();
    let block = black_box(vec![1u8; ACTIVATION]);
    assert!(
        mapped_block_bytes() >= before + ACTIVATION,
        "by default glibc maps a {ACTIVATION}-byte block afresh (and unmaps it on free)"
    );
    drop(block);

    assert!(kinfonce_train::allocator::retain_freed_memory());
    let before = mapped_block_bytes();
    let blocks: Vec<Vec<u8>> = (0..3).map(|_| black_box(vec![1u8; ACTIVATION])).collect();
    assert_eq!(
        mapped_block_bytes(),
        before,
        "after retain_freed_memory no block is a fresh mapping"
    );
    drop(blocks);
}
