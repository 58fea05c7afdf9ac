"""DataMan-style raters ("DataMan: Data Manager for Pre-training LLMs", Peng et al. 2025): an LLM
teacher rates a sample on 14 ratings and 15 domains; fast students rate the corpus."""

CRITERIA = (
    "accuracy", "coherence", "language_consistency", "semantic_density", "knowledge_novelty", "topic_focus",
    "creativity", "professionalism", "style_consistency", "grammatical_diversity", "structural_standardization",
    "originality", "sensitivity",
)
RATINGS = CRITERIA + ("overall_score",)
DOMAINS = (
    "medicine", "finance", "law", "education", "technology", "entertainment", "mathematics", "coding",
    "government", "culture", "transportation", "retail_ecommerce", "telecommunication", "agriculture", "other",
)
