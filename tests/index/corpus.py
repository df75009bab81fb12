"""Test data for the index tests: short texts on distinct psychiatric topics, written for these
tests, each with a paraphrased question it answers; and small builders around them."""

from __future__ import annotations

from pathlib import Path

from ragtune.core.config import RagtuneConfig, build_config
from ragtune.core.records import Chunk, Document, Section, write_jsonl

# (heading, text, a paraphrased question that text answers, sharing few of its words)
TOPICS: list[tuple[str, str, str]] = [
    (
        "Lithium",
        "Patients kept on lithium need their serum concentration measured regularly, since the gap "
        "between an effective and a toxic level is small. Kidney and thyroid tests are repeated "
        "every few months while the drug is continued.",
        "How often should blood levels and organ function be checked for someone on this mood stabiliser?",
    ),
    (
        "Clozapine",
        "Clozapine can wipe out neutrophils, a condition called agranulocytosis, so the absolute "
        "neutrophil count is tested weekly at first and less often once treatment is stable.",
        "Which antipsychotic requires routine white blood cell monitoring because of infection risk?",
    ),
    (
        "Serotonin syndrome",
        "Combining several serotonergic medicines can cause serotonin syndrome: agitation, sweating, "
        "fever, muscle rigidity with clonus, and a racing heart shortly after a dose change.",
        "What toxic reaction occurs when too many antidepressants that raise serotonin are taken together?",
    ),
    (
        "Neuroleptic malignant syndrome",
        "Neuroleptic malignant syndrome is a rare emergency after antipsychotic exposure, marked by "
        "very high temperature, lead-pipe stiffness, confusion and a raised creatine kinase.",
        "Dangerous fever and rigid muscles after starting a dopamine blocker",
    ),
    (
        "Electroconvulsive therapy",
        "Electroconvulsive therapy induces a brief controlled seizure under anaesthesia and remains "
        "one of the most effective options for severe or psychotic depression that resists medication.",
        "Which brain stimulation procedure done under general anaesthetic helps treatment-resistant depression?",
    ),
    (
        "Insomnia",
        "Cognitive behavioural therapy for insomnia restricts time in bed, ties the bed to sleep "
        "only, and challenges worries about sleeplessness; it outperforms hypnotics in the long run.",
        "What talking treatment works best for people who cannot fall asleep at night?",
    ),
    (
        "Alcohol withdrawal",
        "After heavy drinking stops, tremor, hallucinations and seizures may appear within days; "
        "delirium tremens is prevented with a tapering benzodiazepine regimen and thiamine.",
        "How do you manage the shakes and seeing things when a heavy drinker quits suddenly?",
    ),
    (
        "Opioid use disorder",
        "Buprenorphine and methadone maintenance reduce illicit opioid use and overdose deaths; "
        "naloxone kits should be handed to patients and their families.",
        "Which substitution medicines lower mortality in people addicted to heroin?",
    ),
    (
        "ADHD",
        "Stimulants such as methylphenidate improve attention and impulsivity in attention deficit "
        "hyperactivity disorder; growth, blood pressure and appetite are followed during treatment.",
        "Medication for children who are restless and easily distracted at school",
    ),
    (
        "Anorexia nervosa",
        "In severely underweight patients, nutrition must be reintroduced slowly because a sudden "
        "load of carbohydrate drops phosphate and can cause heart failure: the refeeding syndrome.",
        "Why must food be increased gradually when an emaciated patient starts eating again?",
    ),
    (
        "Post-traumatic stress disorder",
        "Trauma-focused psychotherapy, including eye movement desensitisation and reprocessing, is "
        "the first choice after a traumatic event leaves flashbacks, nightmares and hypervigilance.",
        "Recommended psychological help for recurring nightmares and flashbacks after an assault",
    ),
    (
        "Obsessive-compulsive disorder",
        "Exposure with response prevention asks the person to face feared contamination or doubt "
        "while refraining from washing or checking rituals, until the anxiety fades by itself.",
        "Therapy for someone who keeps washing their hands because of intrusive fears of germs",
    ),
    (
        "Postpartum depression",
        "Low mood, tearfulness and guilt in the weeks after childbirth may signal postnatal "
        "depression; screening questionnaires in the first months help mothers get care early.",
        "Sadness in a new mother after delivering her baby",
    ),
    (
        "Tardive dyskinesia",
        "Long-term use of dopamine-blocking drugs may leave involuntary movements of the lips, "
        "tongue and jaw, known as tardive dyskinesia, which can persist after the drug is stopped.",
        "Uncontrollable chewing and tongue movements after years on antipsychotics",
    ),
    (
        "Delirium",
        "Older inpatients often become acutely confused, with attention that fluctuates across the "
        "day; infection, dehydration and new medicines are common triggers of this delirium.",
        "Sudden confusion in elderly hospital patients that comes and goes",
    ),
]


def topic_chunks() -> list[Chunk]:
    chunks: list[Chunk] = []
    for heading, text, _ in TOPICS:
        path = ["Psychiatric pharmacology and therapy", heading]
        chunks.append(
            Chunk(
                chunk_id=Chunk.make_id("topics", path, text),
                doc_id="topics",
                section_id=f"s{len(chunks)}",
                section_path=path,
                text=text,
                token_count=0,
            )
        )
    return chunks


def topics_document(doc_id: str = "topics-1") -> Document:
    """The topics as one document: a title section, one level-2 section per topic, and an empty one."""
    sections = [Section(section_id="s0", heading="Psychiatry notes", level=1, path=[], text="")]
    for i, (heading, text, _) in enumerate(TOPICS, start=1):
        sections.append(
            Section(section_id=f"s{i}", heading=heading, level=2, path=["Psychiatry notes"], text=text)
        )
    return Document(
        doc_id=doc_id,
        source_uri=f"notes/{doc_id}.md",
        sha256="0" * 64,
        title="Psychiatry notes",
        parser="markdown",
        sections=sections,
    )


def write_documents(path: Path, documents: list[Document]) -> Path:
    write_jsonl(path, documents)
    return path


def make_config(tmp_path: Path, **overrides: object) -> RagtuneConfig:
    """Defaults with the run root (and so the cache) inside ``tmp_path``."""
    return build_config({"run": {"root": str(tmp_path / "runs")}}, dict(overrides))
