package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/cocoon/internal/doctor"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

func (a *app) doctorCommand() *cobra.Command {
	var output string
	o := doctor.Options{KVMProblem: hypervisor.KVMUnusable}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this host for what Cocoon needs (--fix repairs what it safely can)",
		Long: "Check KVM, the hypervisor and image tools, firmware, CNI plugins and conflists, sysctls,\n" +
			"the iptables FORWARD policy, huge pages, memory merging (KSM, when memory_merge is set),\n" +
			"Cocoon's directories and free disk. Each line is PASS, WARN, FAIL or FIXED; the command\n" +
			"fails when any check fails.\n" +
			"--fix creates missing directories, sets net.ipv4.ip_forward and fs.aio-max-nr (persisted in\n" +
			"/etc/sysctl.d/99-cocoon.conf), starts ksmd when memory_merge is set (not persisted) and\n" +
			"writes a bridge conflist (10-cocoon.conflist) when there is none. It installs nothing and\n" +
			"leaves firewall rules alone; running it again changes nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return fmt.Errorf("invalid --output %q: use json", output)
			}
			c := a.cfg
			o.RootDir, o.RunDir, o.LogDir, o.MemoryDir = c.RootDir, c.RunDir, c.LogDir, c.MemoryDir
			o.CNIConfDir, o.CNIBinDir = c.CNIConfDir, c.CNIBinDir
			o.QEMUBinary, o.MemoryMerge = c.QEMUBinary, c.MemoryMerge
			o.FirmwareCode, o.FirmwareVars = c.FirmwareCode, c.FirmwareVars
			o.FirmwareCodeARM64, o.FirmwareVarsARM64 = c.FirmwareCodeARM64, c.FirmwareVarsARM64
			for _, r := range hypervisor.Registered() {
				o.Backends = append(o.Backends, doctor.Backend{Name: r.Name, Available: r.New(c).Available})
			}
			results := doctor.Run(cmd.Context(), o)
			if output == "json" {
				if err := printJSON(a.stdout, map[string]any{"checks": results, "ok": !doctor.Failed(results)}); err != nil {
					return err
				}
			} else {
				counts := map[doctor.Status]int{}
				for _, r := range results {
					counts[r.Status]++
					fmt.Fprintf(a.stdout, "[%s] %s: %s\n", r.Status, r.Name, r.Detail)
					if r.Hint != "" && r.Status != doctor.Pass {
						fmt.Fprintf(a.stdout, "       → %s\n", r.Hint)
					}
				}
				fmt.Fprintf(a.stdout, "doctor: %d PASS, %d FIXED, %d WARN, %d FAIL\n", counts[doctor.Pass], counts[doctor.Fixed], counts[doctor.Warn], counts[doctor.Fail])
			}
			if doctor.Failed(results) {
				return fmt.Errorf("doctor: some checks failed (see the FAIL lines; --fix repairs directories, sysctls and the conflist)")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Fix, "fix", false, "create directories, set sysctls (persisted) and write a default bridge conflist")
	f.StringVarP(&output, "output", "o", "", "print the results as json")
	f.StringVar(&o.Subnet, "subnet", "10.88.0.0/16", "subnet of the conflist --fix writes")
	f.StringVar(&o.ProcSys, "proc-sys", "/proc/sys", "where sysctls are read and set")
	f.StringVar(&o.SysctlDir, "sysctl-dir", "/etc/sysctl.d", "where --fix persists sysctls")
	f.StringVar(&o.NetnsDir, "netns-dir", "/var/run/netns", "named network namespaces directory")
	f.StringVar(&o.KSMDir, "ksm-dir", hypervisor.KSMDir, "the kernel's same-page merging controls (memory_merge)")
	for _, h := range []string{"proc-sys", "sysctl-dir", "netns-dir"} {
		_ = f.MarkHidden(h) // for tests, which must not change the machine
	}
	return cmd
}
