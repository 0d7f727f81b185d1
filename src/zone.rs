//! The module's shared memory zone: one nginx zone ("dynpage_module", sized by
//! `dynpage_zone_size`), created while nginx reads its configuration and shared by every worker.
//! nginx hands a reload the same zone (same name, size and module), so what it holds survives
//! `nginx -s reload` and a worker's crash; a restart starts it empty.
//!
//! It holds the counters `dynpage_status` reports (`dynpage_core::metrics`, allocated first, so
//! that they always fit) and the stale store (the last good production output of each page, see
//! `dynpage_core::stale_store`). Everything else that must outlive a worker belongs here too.

use std::ffi::{c_char, c_void};
use std::ptr::{self, NonNull};

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_conf_t, ngx_int_t, ngx_shared_memory_add, ngx_shm_zone_t, ngx_shmtx_lock, ngx_shmtx_unlock,
    ngx_slab_alloc_locked, ngx_slab_calloc_locked, ngx_slab_free_locked, ngx_slab_pool_t,
    NGX_ERROR, NGX_OK,
};
use ngx::http::HttpModule;
use ngx::ngx_string;

use dynpage_core::metrics::Counters;
use dynpage_core::stale_store::{self, Identity, Slot, Stored};

use crate::conf::MainConf;
use crate::module::Module;

/// One stale-store slot per this many bytes of the zone.
const BYTES_PER_SLOT: usize = 16 * 1024;
/// How many of the oldest outputs are dropped, at most, to make room for a new one.
const MAX_EVICTIONS: usize = 64;
/// The largest output kept: this fraction of the zone (a bigger one would empty the store).
const MAX_OUTPUT_SHARE: usize = 8;
const MAGIC: u64 = 0x6479_6e70_6167_6504; // "dynpage" v4: the counters (with round trips) beside the stale store

/// The zone's root, allocated from its slab pool once (plain data: addresses in the zone).
#[repr(C)]
struct Root {
    magic: u64,
    slots: *mut Slot,
    nslots: usize,
    /// All zero when allocated, which is a valid `Counters` (atomics only).
    counters: *mut Counters,
}

/// Checks the http block as a whole once it is parsed, and adds the zone when it is wanted.
///
/// # Safety
/// nginx calls it with the configuration being read and our main conf (created by
/// `create_main_conf`).
pub unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: per the contract; nothing else refers to either during the call.
    let (cf, mcf) = unsafe { (&mut *cf, &mut *conf.cast::<MainConf>()) };
    crate::ffi_guard::catch("init_main_conf", NGX_CONF_ERROR, || {
        if !mcf.check(cf) {
            return NGX_CONF_ERROR;
        }
        if mcf.needs_zone() {
            mcf.zone = add(cf, mcf.zone_size());
            if mcf.zone.is_none() {
                return NGX_CONF_ERROR;
            }
        }
        NGX_CONF_OK
    })
}

/// Adds the zone to the configuration being read.
pub fn add(cf: &mut ngx_conf_t, size: usize) -> Option<NonNull<ngx_shm_zone_t>> {
    let mut name = ngx_string!("dynpage_module");
    // The tag is our module's address, as nginx's modules do.
    let tag = ptr::from_ref(Module::module()).cast_mut().cast::<c_void>();
    // SAFETY: `cf` is the configuration being read; nginx copies the name.
    let zone = NonNull::new(unsafe { ngx_shared_memory_add(cf, &mut name, size, tag) })?;
    // SAFETY: nginx returned a zone of the configuration being read (live, not yet mapped).
    unsafe { (*zone.as_ptr()).init = Some(init_zone) };
    Some(zone)
}

unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    crate::ffi_guard::catch("the shared zone's init", NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx passes the zone it mapped (a slab pool at its start) and, on a reload
        // that keeps it, the previous cycle's data for it.
        unsafe { set_up(zone, data) }
    })
}

/// Sets up a new zone, or adopts the previous cycle's.
///
/// # Safety
/// As for `ngx_shm_zone_init_pt`: `zone` is a zone nginx just mapped (a slab pool at its
/// start), `data` the previous cycle's data for it or null.
unsafe fn set_up(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: per the contract; nginx does not touch the zone while this runs.
    let zone = unsafe { &mut *zone };
    if !data.is_null() {
        zone.data = data;
        return NGX_OK as ngx_int_t;
    }
    let pool = zone.shm.addr.cast::<ngx_slab_pool_t>();
    // SAFETY: a new zone starts with its slab pool, which nginx set up; nobody else uses it yet.
    let pool = unsafe { &mut *pool };
    // SAFETY: the pool's mutex, set up by nginx.
    unsafe { ngx_shmtx_lock(&mut pool.mutex) };
    // SAFETY: the lock is held.
    let root = unsafe { ngx_slab_alloc_locked(pool, std::mem::size_of::<Root>()) }.cast::<Root>();
    // SAFETY: the lock is held. First, so that the counters always fit.
    let counters =
        unsafe { ngx_slab_calloc_locked(pool, std::mem::size_of::<Counters>()) }.cast::<Counters>();
    let nslots = (zone.shm.size / BYTES_PER_SLOT).max(64);
    // SAFETY: the lock is held.
    let slots = unsafe { ngx_slab_calloc_locked(pool, nslots * std::mem::size_of::<Slot>()) };
    // What does not fit is dropped by us (oldest first), not logged by the pool.
    pool.set_log_nomem(0);
    // SAFETY: locked above.
    unsafe { ngx_shmtx_unlock(&mut pool.mutex) };
    if root.is_null() || slots.is_null() || counters.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    // SAFETY: zeroed memory of the right size and alignment (the slab pool aligns to its
    // slot size, a power of two over 8), which is a valid `Counters`.
    unsafe { (*counters).init(crate::clock::now_ms()) };
    // SAFETY: `root` was just allocated for a `Root`, and nobody else holds it.
    unsafe {
        root.write(Root {
            magic: MAGIC,
            slots: slots.cast::<Slot>(),
            nslots,
            counters,
        })
    };
    pool.data = root.cast();
    zone.data = root.cast();
    NGX_OK as ngx_int_t
}

/// A worker's handle on the zone. Its pointers are the zone's slab pool and root, which live
/// as long as the cycle (`attach` checked them): every method relies on that.
pub struct Zone {
    pool: *mut ngx_slab_pool_t,
    root: *mut Root,
}

/// The zone's lock, held while a `Locked` lives.
struct Locked<'a> {
    zone: &'a Zone,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: taken in `Zone::lock`; the pool lives as long as the cycle.
        unsafe { ngx_shmtx_unlock(&mut (*self.zone.pool).mutex) };
    }
}

impl Locked<'_> {
    fn slots(&mut self) -> &mut [Slot] {
        // SAFETY: the root is written once, by `set_up`, before any worker attaches.
        let root = unsafe { &*self.zone.root };
        // SAFETY: the table was allocated for `nslots` slots in `set_up`; the lock is held,
        // and `&mut self` keeps this the one view of it.
        unsafe { std::slice::from_raw_parts_mut(root.slots, root.nslots) }
    }

    fn free_blob(&mut self, slot: usize) {
        let s = std::mem::take(&mut self.slots()[slot]);
        if s.blob != 0 {
            // SAFETY: the blob was allocated from this pool by `remember`; the lock is held.
            unsafe { ngx_slab_free_locked(self.zone.pool, s.blob as *mut c_void) };
        }
    }

    /// A blob of `len` bytes, dropping the oldest outputs (never `keep`) until one fits.
    fn alloc(&mut self, len: usize, keep: usize) -> Option<*mut u8> {
        for _ in 0..MAX_EVICTIONS {
            // SAFETY: the lock is held.
            let p = unsafe { ngx_slab_alloc_locked(self.zone.pool, len) }.cast::<u8>();
            if !p.is_null() {
                return Some(p);
            }
            let victim = stale_store::oldest(self.slots(), keep)?;
            self.free_blob(victim);
        }
        None
    }
}

impl Zone {
    /// The handle of the zone added by `add`, once nginx has set it up.
    ///
    /// # Safety
    /// `zone` is the zone `add` returned, in the running cycle.
    pub unsafe fn attach(zone: NonNull<ngx_shm_zone_t>) -> Option<Zone> {
        // SAFETY: per the contract, the zone is live and set up.
        let zone = unsafe { zone.as_ref() };
        let root = zone.data.cast::<Root>();
        let pool = zone.shm.addr.cast::<ngx_slab_pool_t>();
        // SAFETY: `data` is null or the root `set_up` wrote (or adopted).
        let ours = !root.is_null() && unsafe { (*root).magic } == MAGIC;
        ours.then_some(Zone { pool, root })
    }

    /// The counters, which live as long as the zone is mapped: until this process exits.
    pub fn counters(&self) -> &'static Counters {
        // SAFETY: the root is written once, by `set_up`, before any worker attaches; its
        // counters are never freed, and the zone stays mapped in this process until it exits.
        unsafe { &*(*self.root).counters }
    }

    /// Runs `f` under the zone's lock (for what must not race between workers).
    pub fn locked<T>(&self, f: impl FnOnce() -> T) -> T {
        let _held = self.lock();
        f()
    }

    fn lock(&self) -> Locked<'_> {
        // SAFETY: the pool lives as long as the cycle; unlocked when `Locked` drops.
        unsafe { ngx_shmtx_lock(&mut (*self.pool).mutex) };
        Locked { zone: self }
    }

    /// Keeps `stored` as the last good output of `id` (replacing what was there). False when it
    /// is over an eighth of the zone or does not fit even after dropping the oldest outputs
    /// (the output kept before for `id` then stays).
    pub fn remember(&self, id: Identity, stored: &Stored<'_>, now_ms: u64) -> bool {
        let len = stored.encoded_len();
        // SAFETY: the pool's bounds are fixed when nginx maps the zone.
        let zone_bytes = unsafe { ((*self.pool).end as usize).saturating_sub(self.pool as usize) };
        if len > zone_bytes / MAX_OUTPUT_SHARE {
            return false;
        }
        let mut locked = self.lock();
        let Some(i) = stale_store::place(locked.slots(), id.hash) else {
            return false;
        };
        let Some(p) = locked.alloc(len, i) else {
            return false;
        };
        // SAFETY: `p` was just allocated with `len` bytes and nobody else holds it.
        let out = unsafe { std::slice::from_raw_parts_mut(p, len) };
        if !stored.encode(out) {
            // SAFETY: allocated above from this pool; the lock is held.
            unsafe { ngx_slab_free_locked(self.pool, p.cast()) };
            return false;
        }
        locked.free_blob(i);
        locked.slots()[i] = Slot {
            hash: id.hash,
            stored_ms: now_ms,
            blob: p as usize,
            blob_len: len,
        };
        true
    }

    /// Marks the output kept for `id` as still the good one at `now_ms`, if it is the one with
    /// `etag` (it did not change); false otherwise.
    pub fn touch(&self, id: Identity, etag: &[u8; 18], now_ms: u64) -> bool {
        let mut locked = self.lock();
        let slots = locked.slots();
        let Some(i) = stale_store::find(slots, id.hash) else {
            return false;
        };
        let slot = slots[i];
        // SAFETY: the blob was written by `remember` with `blob_len` bytes; the lock is held.
        let blob = unsafe { std::slice::from_raw_parts(slot.blob as *const u8, slot.blob_len) };
        let same = slot.blob != 0
            && Stored::decode(blob).is_some_and(|s| s.check == id.check && &s.etag == etag);
        if same {
            slots[i].stored_ms = now_ms;
        }
        same
    }

    /// Calls `f` with the last good output of `id` if it was good within `max_age_ms`; what `f`
    /// returns (it runs under the zone's lock: copy and return).
    pub fn recall<T>(
        &self,
        id: Identity,
        max_age_ms: u64,
        now_ms: u64,
        f: impl FnOnce(&Stored<'_>) -> T,
    ) -> Option<T> {
        let mut locked = self.lock();
        let slots = locked.slots();
        let slot = slots[stale_store::find(slots, id.hash)?];
        if now_ms >= slot.stored_ms.saturating_add(max_age_ms) || slot.blob == 0 {
            return None;
        }
        // SAFETY: the blob was written by `remember` with `blob_len` bytes; the lock is held.
        let blob = unsafe { std::slice::from_raw_parts(slot.blob as *const u8, slot.blob_len) };
        let stored = Stored::decode(blob)?;
        (stored.check == id.check).then(|| f(&stored))
    }
}
