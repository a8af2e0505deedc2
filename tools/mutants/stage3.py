"""Stage 3 (part3_seccomp): mistakes students make in q9-q10.  Data only:
tools/mutate.py reads MUTANTS as literals.  Each `edit` is a list of (old, new): old, in
the stage's part, exactly once, becomes new."""

MUTANTS = [
    # q9: lock the container in ---------------------------------------------------------
    {
        "id": "no-seccomp-filter",
        "exercise": "q9",
        "file": "container.py",
        "why": "the seccomp filter is never loaded: setuid chmod, nested user namespaces, "
               "ptrace... all allowed",
        "fast": True,
        "edit": [("        security.load_seccomp_filter(container.seccomp_program)\n", "")],
    },
    {
        "id": "no-no-new-privs",
        "exercise": "q9",
        "file": "container.py",
        "why": "no_new_privs never set (seccomp(2) still loads: root in the user namespace "
               "holds CAP_SYS_ADMIN): a setuid program could still gain privileges",
        "edit": [("        security.set_no_new_privs()\n", "")],
    },
    {
        "id": "capabilities-not-dropped",
        "exercise": "q9",
        "file": "container.py",
        "why": "drop_capabilities() never called: the command keeps CAP_SYS_ADMIN and the "
               "rest in its bounding set",
        "edit": [("        security.drop_capabilities()\n        security.set_no_new_privs()\n",
                  "        security.set_no_new_privs()\n")],
    },
    {
        "id": "lock-in-in-parent",
        "exercise": "q9",
        "file": "container.py",
        "why": "the three steps made in the parent (after clone) instead of the child: the "
               "host's user may not drop from its bounding set (EPERM), and the container "
               "would not be locked in anyway",
        "edit": [("        security.drop_capabilities()\n"
                  "        security.set_no_new_privs()\n"
                  "        security.load_seccomp_filter(container.seccomp_program)\n", ""),
                 ("        idmap.write_id_maps(pid, container.id_maps)\n",
                  "        idmap.write_id_maps(pid, container.id_maps)\n"
                  "        security.drop_capabilities()\n"
                  "        security.set_no_new_privs()\n"
                  "        security.load_seccomp_filter(container.seccomp_program)\n")],
    },
    {
        "id": "seccomp-in-parent-before-clone",
        "exercise": "q9",
        "file": "container.py",
        "why": "no_new_privs and the filter loaded in the parent, before clone (the child "
               "would inherit them): the filter refuses the parent's own clone with "
               "CLONE_NEWUSER (EPERM, 125)",
        "edit": [("        security.set_no_new_privs()\n"
                  "        security.load_seccomp_filter(container.seccomp_program)\n", ""),
                 ("    container.seccomp_program = security.seccomp_program()\n",
                  "    container.seccomp_program = security.seccomp_program()\n"
                  "    security.set_no_new_privs()\n"
                  "    security.load_seccomp_filter(container.seccomp_program)\n")],
    },
    {
        "id": "seccomp-before-capabilities",
        "exercise": "q9",
        "file": "container.py",
        "why": "the filter loaded first, then the capabilities dropped and no_new_privs set",
        "equivalent": "root in the new user namespace holds CAP_SYS_ADMIN, so seccomp(2) "
                      "needs no no_new_privs, and the filter refuses none of the calls that "
                      "follow (prctl, capget, capset): the command starts in the same state",
        "edit": [("        security.drop_capabilities()\n"
                  "        security.set_no_new_privs()\n"
                  "        security.load_seccomp_filter(container.seccomp_program)\n",
                  "        security.load_seccomp_filter(container.seccomp_program)\n"
                  "        security.drop_capabilities()\n"
                  "        security.set_no_new_privs()\n")],
    },
    {
        "id": "no-new-privs-after-seccomp",
        "exercise": "q9",
        "file": "container.py",
        "why": "no_new_privs set after the filter is loaded",
        "equivalent": "dropping from the bounding set leaves CAP_SYS_ADMIN effective, so "
                      "seccomp(2) is allowed without no_new_privs, which the filter does not "
                      "refuse either: both are set before exec, as in the reference",
        "edit": [("        security.set_no_new_privs()\n"
                  "        security.load_seccomp_filter(container.seccomp_program)\n",
                  "        security.load_seccomp_filter(container.seccomp_program)\n"
                  "        security.set_no_new_privs()\n")],
    },
    # q10: drop from the bounding set --------------------------------------------------
    {
        "id": "capbset-read-not-drop",
        "exercise": "q10",
        "file": "security.py",
        "why": "prctl(PR_CAPBSET_READ) (23) instead of PR_CAPBSET_DROP (24): it only says "
               "whether each capability is there, and drops nothing",
        "edit": [("            kernel.sys_prctl(kernel.PR_CAPBSET_DROP, number, shown=name)\n",
                  "            kernel.sys_prctl(23, number, shown=name)  # PR_CAPBSET_READ\n")],
    },
    {
        "id": "drop-list-index-not-number",
        "exercise": "q10",
        "file": "security.py",
        "why": "drops the capabilities numbered by their place in the list (0..19: "
               "CAP_CHOWN, CAP_DAC_OVERRIDE, ...), not their own numbers: CAP_SYS_ADMIN "
               "stays",
        "edit": [("    for name, number in CAPABILITIES_TO_DROP:\n",
                  "    for number, (name, _) in enumerate(CAPABILITIES_TO_DROP):\n")],
    },
    {
        "id": "drop-loop-off-by-one",
        "exercise": "q10",
        "file": "security.py",
        "why": "range(len(...) - 1): the last capability of the list (CAP_WAKE_ALARM) is "
               "never dropped",
        "edit": [("    for name, number in CAPABILITIES_TO_DROP:\n",
                  "    for i in range(len(CAPABILITIES_TO_DROP) - 1):\n"
                  "        name, number = CAPABILITIES_TO_DROP[i]\n")],
    },
    {
        "id": "drop-bit-mask-not-number",
        "exercise": "q10",
        "file": "security.py",
        "why": "PR_CAPBSET_DROP given the capability as a bit mask (1 << number), as in "
               "CapBnd: EINVAL (125), or the wrong capability for 0 and 1",
        "edit": [("            kernel.sys_prctl(kernel.PR_CAPBSET_DROP, number, shown=name)\n",
                  "            kernel.sys_prctl(kernel.PR_CAPBSET_DROP, 1 << number, "
                  "shown=name)\n")],
    },
    {
        "id": "drop-list-without-sys-admin",
        "exercise": "q10",
        "file": "security.py",
        "why": "CAP_SYS_ADMIN missing from the drop list: the command may mount, set "
               "hostnames and more over what its namespaces own, and keeps it across exec",
        "edit": [(" (\"CAP_SYS_ADMIN\", 21),", "")],
    },
    {
        "id": "drop-from-effective-set",
        "exercise": "q10",
        "file": "security.py",
        "why": "the capabilities cleared from the effective and permitted sets (capset) "
               "instead of the bounding set: the command, root in its namespace, gets "
               "them back at exec",
        "edit": [("    for name, number in CAPABILITIES_TO_DROP:\n"
                  "        with step(f\"drop {name} from the bounding set\"):\n"
                  "            kernel.sys_prctl(kernel.PR_CAPBSET_DROP, number, shown=name)\n",
                  "    with step(\"drop the dangerous capabilities\"):\n"
                  "        data = kernel.sys_capget()\n"
                  "        for name, number in CAPABILITIES_TO_DROP:\n"
                  "            half = data[number // 32]\n"
                  "            half.effective &= ~(1 << number % 32)\n"
                  "            half.permitted &= ~(1 << number % 32)\n"
                  "        kernel.sys_capset(data)\n")],
    },
    {
        "id": "drop-loop-never-advances",
        "exercise": "q10",
        "file": "security.py",
        "why": "a while loop over the list that never moves on: the child drops the first "
               "capability forever, and zookeeper never exits",
        "edit": [("    for name, number in CAPABILITIES_TO_DROP:\n"
                  "        with step(f\"drop {name} from the bounding set\"):\n"
                  "            kernel.sys_prctl(kernel.PR_CAPBSET_DROP, number, shown=name)\n",
                  "    i = 0\n"
                  "    while i < len(CAPABILITIES_TO_DROP):\n"
                  "        name, number = CAPABILITIES_TO_DROP[i]\n"
                  "        with step(f\"drop {name} from the bounding set\"):\n"
                  "            kernel.sys_prctl(kernel.PR_CAPBSET_DROP, number, shown=name)\n")],
    },
    {
        "id": "drop-errors-ignored",
        "exercise": "q10",
        "file": "security.py",
        "why": "a failed PR_CAPBSET_DROP ignored (try/except OSError: pass)",
        "equivalent": "root in the container holds CAP_SETPCAP in its user namespace and "
                      "every number in the list is a valid capability: no drop fails",
        "edit": [("        with step(f\"drop {name} from the bounding set\"):\n"
                  "            kernel.sys_prctl(kernel.PR_CAPBSET_DROP, number, shown=name)\n",
                  "        try:\n"
                  "            kernel.sys_prctl(kernel.PR_CAPBSET_DROP, number, shown=name)\n"
                  "        except OSError:\n"
                  "            pass\n")],
    },
]
