// virtio-pci on the KVM engine: notifications through KVM_IOEVENTFD and interrupts through KVM_IRQFD.
//
// Notifications: each virtqueue's notify register (virtio 1.2 §4.1.4.4: BAR 0 + NOTIFY_OFFSET + queue * 4) gets an
// ioeventfd, so the guest's 16-bit write to it signals an eventfd inside the kernel: the vCPU does not exit to user
// space and goes on at once (no KVM_RUN return, no thread hand-off, no waiting for the device). The main thread
// hears the eventfd through an EventfdWatcher (src/kvm/eventfd-watcher.ts) and runs the device's queue there, as a
// notify exit would have. The ioeventfds follow the BAR: VirtioPciFunction tells us when the guest moves it.
//
// Interrupts: an MSI-X message (address, data) the device sends gets a GSI routed to that message
// (KVM_SET_GSI_ROUTING, type MSI) and an irqfd on that GSI; delivering it is then an eventfd write, which the kernel
// turns into the interrupt. Routes are made on first use of a message and kept (a driver programs its vectors once;
// irqbalance moving one makes another), up to MAX_MSI_ROUTES, after which messages go through KVM_SIGNAL_MSI.
// INTx stays on KVM_IRQ_LINE (a level-triggered irqfd needs a resample eventfd and EOI tracking for no gain here).
import fs from 'node:fs';
import type { KvmVm, GsiRoutingEntry } from '../kvm/kvm.ts';
import { eventfd } from '../kvm/sys.ts';
import { EventfdWatcher } from '../kvm/eventfd-watcher.ts';
import { NOTIFY_OFFSET, NOTIFY_OFF_MULTIPLIER, type VirtioPciFunction } from '../devices/virtio/pci.ts';
import { IOAPIC_GSI_COUNT } from '../boot/platform.ts';

/** MSI routes made for irqfds at most (KVM allows 4096 routes in all). */
export const MAX_MSI_ROUTES = 128;
/** The first GSI after the IOAPIC's pins: MSI routes take GSIs from here. */
const FIRST_MSI_GSI = IOAPIC_GSI_COUNT;
/** Virtio drivers write the queue index as 16 bits (§4.1.5.2); other widths exit and reach the BAR as before. */
const NOTIFY_WIDTH = 2;

export interface KvmVirtioStats {
  ioeventfds: number;
  /** Assignments KVM refused (the queue's notifications then exit). */
  ioeventfdRefusals: number;
  /** Queue runs started by an ioeventfd. */
  notifications: number;
  msiRoutes: number;
  /** MSIs delivered by an irqfd write / by KVM_SIGNAL_MSI. */
  irqfdMsis: number;
  signalMsis: number;
}

interface QueueFd { fn: VirtioPciFunction; queue: number; fd: number; addr: number | undefined }

export class KvmVirtioAccel {
  readonly stats: KvmVirtioStats = { ioeventfds: 0, ioeventfdRefusals: 0, notifications: 0, msiRoutes: 0, irqfdMsis: 0, signalMsis: 0 };
  private readonly watcher = new EventfdWatcher();
  private readonly queueFds: QueueFd[] = [];
  private readonly msiRoutes = new Map<number, Map<number, { gsi: number; fd: number }>>();
  private readonly routeList: GsiRoutingEntry[] = [];
  private readonly one = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);
  private closed = false;
  /** Resolves once notifications are being watched (the watcher's thread polls). */
  ready: Promise<void> = Promise.resolve();

  /**
   * `baseRoutes`: the VM's irqchip routes, which every KVM_SET_GSI_ROUTING must repeat. `ioeventfd` / `irqfd`: use
   * that path (the caller checks KVM_CAP_IOEVENTFD, KVM_CAP_IRQFD and KVM_CAP_IRQ_ROUTING).
   */
  constructor(
    private readonly vm: KvmVm,
    functions: readonly VirtioPciFunction[],
    private readonly baseRoutes: readonly GsiRoutingEntry[],
    private use: { ioeventfd: boolean; irqfd: boolean },
    /** Words to notify as well when a notification arrives (the vCPU channels' turn words: see EventfdWatcher.alsoWake). */
    wake: readonly { sab: SharedArrayBuffer; index: number }[] = [],
  ) {
    if (use.ioeventfd && functions.length > 0) {
      try {
        for (const fn of functions) {
          const mine: QueueFd[] = [];
          for (let q = 0; q < fn.queueCount; q++) {
            const entry: QueueFd = { fn, queue: q, fd: eventfd(), addr: undefined };
            this.queueFds.push(entry);
            mine.push(entry);
            this.watcher.add(entry.fd, () => {
              this.stats.notifications++;
              fn.process(q);
            });
          }
          fn.setNotifyAccel({ notifyAreaMoved: (base) => this.moveNotify(mine, base) });
        }
        for (const w of wake) this.watcher.alsoWake(w.sab, w.index);
        this.ready = this.watcher.start();
      } catch (e) {
        void this.close();
        throw e;
      }
    }
  }

  /**
   * Deassign the queues' ioeventfds at their old addresses and assign them at the new ones. The guest chooses the
   * address (it places the BAR), so a refusal from KVM must not reach the guest's config write: the queue is then
   * left without an ioeventfd and its notifications exit to the BAR, which works as before, only slower.
   */
  private moveNotify(queues: QueueFd[], base: number | undefined): void {
    if (this.closed) return;
    for (const q of queues) {
      if (q.addr !== undefined) {
        try {
          this.vm.ioeventfd({ addr: q.addr, len: NOTIFY_WIDTH, fd: q.fd, pio: false, deassign: true });
        } catch { /* already gone */ }
        q.addr = undefined;
        this.stats.ioeventfds--;
      }
      if (base !== undefined) {
        const addr = base + NOTIFY_OFFSET + q.queue * NOTIFY_OFF_MULTIPLIER;
        try {
          this.vm.ioeventfd({ addr, len: NOTIFY_WIDTH, fd: q.fd, pio: false });
          q.addr = addr;
          this.stats.ioeventfds++;
        } catch (e) {
          this.stats.ioeventfdRefusals++;
          if (this.stats.ioeventfdRefusals === 1) process.stderr.write(`ringzero: KVM_IOEVENTFD at 0x${addr.toString(16)} refused (${(e as Error).message}): that queue's notifications exit instead\n`);
        }
      }
    }
  }

  /** Where the machine's MSIs go on KVM: an irqfd write (route made on first use) or KVM_SIGNAL_MSI. */
  deliverMsi(address: number, data: number): void {
    if (this.closed) return;
    if (this.use.irqfd) {
      let route = this.msiRoutes.get(address)?.get(data);
      if (!route) {
        try {
          route = this.newRoute(address, data);
        } catch (e) {
          // The message is the guest's choice: if KVM refuses a route for it, stop making routes, keep delivering.
          this.use = { ...this.use, irqfd: false };
          process.stderr.write(`ringzero: MSI route for 0x${(address >>> 0).toString(16)}/0x${data.toString(16)} refused (${(e as Error).message}): MSIs go through KVM_SIGNAL_MSI\n`);
        }
      }
      if (route) {
        this.stats.irqfdMsis++;
        this.signal(route.fd);
        return;
      }
    }
    this.stats.signalMsis++;
    this.vm.signalMsi(BigInt(address >>> 0), data);
  }

  private newRoute(address: number, data: number): { gsi: number; fd: number } | undefined {
    if (this.stats.msiRoutes >= MAX_MSI_ROUTES) return undefined;
    const gsi = FIRST_MSI_GSI + this.stats.msiRoutes;
    const entry: GsiRoutingEntry = { gsi, kind: 'msi', addressLo: address >>> 0, addressHi: 0, data };
    this.vm.setGsiRouting([...this.baseRoutes, ...this.routeList, entry]);
    const fd = eventfd();
    try {
      this.vm.irqfd(fd, gsi);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    this.routeList.push(entry);
    const route = { gsi, fd };
    let byData = this.msiRoutes.get(address);
    if (!byData) this.msiRoutes.set(address, byData = new Map());
    byData.set(data, route);
    this.stats.msiRoutes++;
    return route;
  }

  private signal(fd: number): void {
    try {
      fs.writeSync(fd, this.one);
    } catch (e) {
      // EAGAIN: the counter is at its maximum, the interrupt is pending anyway.
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    }
  }

  /** Notifications are waiting for the main thread's event loop (KvmEngine.pendingMainWork). */
  hasPending(): boolean {
    return this.queueFds.length > 0 && this.watcher.hasPending();
  }

  /** While the VM is paused (snapshot): notifications wait, their queues run on release(). */
  hold(): void {
    this.watcher.hold();
  }

  release(): void {
    this.watcher.release();
  }

  /** Detach from the functions (their notifications exit to the BAR again), stop the watcher, close the eventfds. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const fn of new Set(this.queueFds.map((q) => q.fn))) fn.setNotifyAccel(undefined);
    this.closed = true;
    await this.watcher.close();
    for (const q of this.queueFds) {
      if (q.addr !== undefined) {
        try { this.vm.ioeventfd({ addr: q.addr, len: NOTIFY_WIDTH, fd: q.fd, pio: false, deassign: true }); } catch { /* VM closing */ }
      }
      fs.closeSync(q.fd);
    }
    for (const byData of this.msiRoutes.values()) {
      for (const r of byData.values()) {
        try { this.vm.irqfd(r.fd, r.gsi, true); } catch { /* VM closing */ }
        fs.closeSync(r.fd);
      }
    }
    this.msiRoutes.clear();
  }
}
