/* SPDX-License-Identifier: MIT */
/*
 * VM compartments (type = "vm"): QEMU guests on a window the partitioner
 * made (a sealed memfd), handed to QEMU as descriptor 3 and mapped through
 * /proc/self/fd/3 as an ivshmem-plain BAR.
 *   driver VM: its xvloop transport (kernel/xvl_virtio.ko) finds its window
 *              there; the device compartment gets the same memfd as fd 3.
 *   device VM: its guest runs `xvl server --link window` on BAR2 of the
 *              window of the driver it serves, with the devices the config
 *              gives it on the kernel command line (xvl.dev=SPEC); a file
 *              device is a virtio-blk disk of the guest on the host file; a
 *              qsd device is a qemu-storage-daemon in the guest (on such a
 *              disk or null-co) its server bridges to (vm_qsd_arg).
 * A guest's RAM is QEMU's private memory: the other side sees the window and
 * nothing else.  Both sides poll (ivshmem-plain has no doorbells), unless the
 * window has vectors: then both VMs are ivshmem-doorbell peers of the
 * partitioner (ivsh.c), fd 3 their introduction, the driver's module gets
 * MSI-X and the device VM's server rings it through BAR0 and takes MSI-X of
 * its own through vfio-pci (an emulated intel-iommu in that VM).
 * arch = "aarch64": qemu-system-aarch64 -machine virt -cpu cortex-a57, the
 * console on the PL011 (ttyAMA0), the ivshmem device and the disks on the
 * virt machine's PCIe host bridge; there is no firmware to turn on the
 * window's memory decoding: the module's pci_enable_device does it in a
 * driver VM, device-init.sh in a device VM.  With vectors both take MSI-X
 * through the GICv3 ITS (gic-version=3), and the device VM gets an emulated
 * SMMUv3 (iommu=smmuv3, the arm64 kernel's built-in arm-smmu-v3) for
 * vfio-pci instead of intel-iommu.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#include "part_int.h"

/* /dev/kvm opens, speaks API 12 and gives us a VM with a vCPU. */
static bool kvm_ioctls_work(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return false;
	bool ok = false;
	if (ioctl(kvm, KVM_GET_API_VERSION, 0) == KVM_API_VERSION) {
		int vm = ioctl(kvm, KVM_CREATE_VM, 0);
		if (vm >= 0) {
			int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
			ok = cpu >= 0;
			if (cpu >= 0)
				close(cpu);
			close(vm);
		}
	}
	close(kvm);
	return ok;
}

/*
 * QEMU itself starts with -accel kvm -cpu max (stopped, -S) and is still up
 * after 1 s.  A nested KVM that creates vCPUs but refuses their MSRs makes
 * QEMU abort right there, which the ioctls above do not show.
 */
static bool qemu_kvm_starts(void)
{
	char *const argv[] = {"qemu-system-x86_64", "-machine", "q35", "-accel", "kvm", "-cpu", "max",
			      "-display", "none", "-nodefaults", "-monitor", "none", "-serial", "none",
			      "-S", NULL};
	posix_spawn_file_actions_t fa;
	pid_t pid;
	posix_spawn_file_actions_init(&fa);
	for (int fd = 0; fd < 3; fd++)
		posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", fd ? O_WRONLY : O_RDONLY, 0);
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return false;
	bool alive = true;
	for (int i = 0; alive && i < 100; i++) {
		alive = waitpid(pid, NULL, WNOHANG) == 0;
		if (alive)
			usleep(10000);
	}
	if (alive) {
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	return alive;
}

/* -accel kvm will work: the ioctls answer and QEMU starts with it. */
bool xp_vm_kvm_usable(void)
{
	return kvm_ioctls_work() && qemu_kvm_starts();
}

static int add(struct xp_comp *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int add(struct xp_comp *k, const char *fmt, ...)
{
	if (k->argc >= XP_MAX_ARGS)
		return -E2BIG;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(k->argv[k->argc], XP_ARG_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= XP_ARG_MAX)
		return -E2BIG;
	k->argc++;
	return 0;
}

/*
 * A qsd device of a device VM: qemu-storage-daemon runs inside the guest,
 * started by device-init.sh from xvl.qsd=NAME,SOURCE,WRITABLE,QUEUES (SOURCE
 * is the guest's disk /dev/vdX on the image, the next virtio-blk disk, or
 * null:SIZE for null-co), exporting vhost-user-blk on /run/NAME.qsd.sock;
 * the device's xvl.dev= is a vhost-user bridge to that socket (the server
 * kicks the daemon when the driver polls).  Appends to out; its length.
 */
static int vm_qsd_arg(struct xp_device *d, unsigned *disks, char *out, size_t cap)
{
	char src[40];
	if (d->image[0]) {
		if (*disks >= 26)
			return -E2BIG;
		snprintf(src, sizeof(src), "/dev/vd%c", 'a' + (*disks)++);
	} else {
		snprintf(src, sizeof(src), "null:%llu", (unsigned long long)d->spec.size);
	}
	snprintf(d->spec.path, sizeof(d->spec.path), "/run/%s.qsd.sock", d->name);
	int n = snprintf(out, cap, " xvl.qsd=%s,%s,%s,%u", d->name, src, d->spec.read_only ? "off" : "on",
			 d->spec.queues ? d->spec.queues : 1);
	return n < 0 || (size_t)n >= cap ? -E2BIG : n;
}

/*
 * The kernel command line: the console, then the config's append, then (a
 * device VM) one xvl.dev=SPEC per device, which the guest's init
 * (scripts/guest/device-init.sh) hands to `xvl server --dev`, and
 * xvl.name=NAME (its --name; left out for a name with blanks).  A file
 * device is the guest's own disk: the n-th file device is /dev/vd<a+n>.
 */
static int vm_cmdline(const struct xp_config *c, const struct xp_comp *k, unsigned vectors,
		      char *out, size_t cap)
{
	int n = snprintf(out, cap, "console=%s panic=-1%s%s", k->vm_aarch64 ? "ttyAMA0" : "ttyS0",
			 k->vm_append[0] ? " " : "", k->vm_append);
	/* doorbells: the device VM's server rings the driver (ivshmem peer 1) through BAR0 and
	 * takes its own MSI-X through vfio-pci (device-init.sh binds it), which needs the
	 * emulated IOMMU (xp_vm_build_argv) turned on in the guest.  The driver's module gives
	 * its queues vectors when both sides have them, else polls them. */
	if (k->role == XP_DEVICE && vectors && n >= 0 && (size_t)n < cap)
		n += snprintf(out + n, cap - (size_t)n, "%s xvl.doorbell=peer=%u",
			      k->vm_aarch64 ? "" : " intel_iommu=on", XP_IVSH_DRIVER);
	unsigned disks = 0;
	if (k->role == XP_DEVICE && n >= 0 && (size_t)n < cap && !k->name[strcspn(k->name, " \t\n\"")])
		n += snprintf(out + n, cap - (size_t)n, " xvl.name=%s", k->name);
	for (unsigned i = 0; k->role == XP_DEVICE && i < k->n_devs && n >= 0 && (size_t)n < cap; i++) {
		struct xp_device d = c->devs[k->devs[i]];
		char spec[600];
		if (d.spec.kind == XVL_BK_FILE) {
			if (disks >= 26)
				return -E2BIG;
			snprintf(d.spec.path, sizeof(d.spec.path), "/dev/vd%c", 'a' + disks++);
		}
		if (d.kind == XP_DEV_QSD) {
			int q = vm_qsd_arg(&d, &disks, out + n, cap - (size_t)n);
			if (q < 0)
				return q;
			n += q;
		}
		xp_spec_text(&d, spec, sizeof(spec));
		n += snprintf(out + n, cap - (size_t)n, " xvl.dev=%s", spec);
	}
	return n < 0 || (size_t)n >= cap ? -E2BIG : 0;
}

/* A device VM's file devices as its virtio-blk disks, in the order vm_cmdline numbers them. */
static int vm_disks(const struct xp_config *c, struct xp_comp *k)
{
	int rc = 0;
	for (unsigned i = 0; k->role == XP_DEVICE && i < k->n_devs; i++) {
		const struct xp_device *x = &c->devs[k->devs[i]];
		const struct xvl_dev_spec *d = &x->spec;
		const char *img = x->kind == XP_DEV_QSD ? x->image : d->kind == XVL_BK_FILE ? d->path : "";
		if (!img[0])
			continue; /* ram, null, a qsd null-co */
		if (strchr(img, ','))
			return -EINVAL; /* QEMU's option syntax would split it */
		rc |= add(k, "-drive");
		rc |= add(k, "file=%s,if=virtio,format=raw%s", img, d->read_only ? ",readonly=on" : "");
	}
	return rc;
}

/* The emulator, its machine and CPU for the VM's arch. */
static int vm_machine(struct xp_comp *k, unsigned vectors)
{
	int rc = 0;
	if (k->vm_aarch64) { /* MSI-X on virt: the GICv3 ITS */
		rc |= add(k, "qemu-system-aarch64");
		rc |= add(k, "-machine");
		rc |= add(k, "%s", !vectors ? "virt" : k->role == XP_DEVICE ? "virt,gic-version=3,iommu=smmuv3"
									 : "virt,gic-version=3");
		rc |= add(k, "-cpu");
		rc |= add(k, "%s", !strcmp(k->vm_accel, "kvm") ? "host" : "cortex-a57");
	} else {
		rc |= add(k, "qemu-system-x86_64");
		rc |= add(k, "-machine");
		rc |= add(k, "q35");
		rc |= add(k, "-cpu");
		rc |= add(k, "max");
	}
	return rc;
}

/*
 * The QEMU command line of a VM compartment; {window_size} is replaced at
 * start.  QEMU runs with its own seccomp sandbox (-sandbox) instead of the
 * partitioner's allow-list, which is made for xvloop's own programs.  A
 * driver VM's window is its own; a device VM's is the one of the driver it
 * serves (both come in as descriptor 3).
 */
int xp_vm_build_argv(const struct xp_config *c, struct xp_comp *k)
{
	char cmdline[XP_ARG_MAX];
	int win = xp_comp_window(c, (unsigned)(k - c->comps));
	unsigned vectors = win >= 0 ? c->wins[win].vectors : 0;
	int rc = vm_cmdline(c, k, vectors, cmdline, sizeof(cmdline));
	if (rc < 0)
		return rc;
	k->argc = 0;
	rc |= vm_machine(k, vectors);
	rc |= add(k, "-accel");
	rc |= add(k, "%s", k->vm_accel);
	rc |= add(k, "-smp");
	rc |= add(k, "%u", k->vm_vcpus);
	rc |= add(k, "-m");
	rc |= add(k, "%lluM", (unsigned long long)(k->vm_memory >> 20));
	rc |= add(k, "-display");
	rc |= add(k, "none");
	rc |= add(k, "-nodefaults");
	rc |= add(k, "-no-reboot");
	rc |= add(k, "-monitor");
	rc |= add(k, "none");
	/* appended to, not truncated: a restarted VM's console follows the one that died */
	if (k->vm_console[0]) {
		rc |= add(k, "-chardev");
		rc |= add(k, "file,id=xvlcon,append=on,path=%s", k->vm_console);
	}
	rc |= add(k, "-serial");
	rc |= k->vm_console[0] ? add(k, "chardev:xvlcon") : add(k, "stdio");
	rc |= add(k, "-sandbox");
	rc |= add(k, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	rc |= add(k, "-kernel");
	rc |= add(k, "%s", k->vm_kernel);
	if (k->vm_initrd[0]) {
		rc |= add(k, "-initrd");
		rc |= add(k, "%s", k->vm_initrd);
	}
	rc |= add(k, "-append");
	rc |= add(k, "%s", cmdline);
	if (vectors) { /* fd 3: the socketpair ivsh.c filled with this peer's introduction */
		if (k->role == XP_DEVICE && !k->vm_aarch64) { /* MSI-X in the guest's user space: vfio-pci */
			rc |= add(k, "-device");
			rc |= add(k, "intel-iommu,intremap=on");
		}
		rc |= add(k, "-chardev");
		rc |= add(k, "socket,id=xvlivsh,fd=3");
		rc |= add(k, "-device");
		rc |= add(k, "ivshmem-doorbell,chardev=xvlivsh,vectors=%u", vectors);
	} else {
		rc |= add(k, "-object");
		rc |= add(k, "memory-backend-file,id=xvlwin,share=on,mem-path=/proc/self/fd/3,size={window_size}");
		rc |= add(k, "-device");
		rc |= add(k, "ivshmem-plain,memdev=xvlwin");
	}
	if (rc == 0)
		rc = vm_disks(c, k);
	return rc ? (rc == -EINVAL ? -EINVAL : -E2BIG) : 0;
}
